"""The REST and MQTT benchmarks run end to end at tiny sizes and write only their own docs sections."""

from __future__ import annotations

from pathlib import Path

from benchmarks import mqtt_stream, rest_ingest


def test_rest_benchmark_smoke(tmp_path: Path) -> None:
    report = rest_ingest.run(seconds=3, batch=500, clients=1, subjects=20, max_rate=2000)
    assert report["points"] > 0 and report["raw_points"] == report["points"]
    assert report["rest_per_s"] > 0 and report["raw_per_s"] > 0 and report["ratio"] > 0
    docs = tmp_path / "benchmarks.md"
    docs.write_text(f"# Benchmarks\n\nkeep me\n\n{rest_ingest.START}\nold\n{rest_ingest.END}\n\n"
                    f"{mqtt_stream.START}\nmqtt stays\n{mqtt_stream.END}\n")
    rest_ingest.write_docs(report, docs)
    text = docs.read_text()
    assert "keep me" in text and "mqtt stays" in text and "\nold\n" not in text
    assert "points/s" in text and text.count(rest_ingest.START) == 1


def test_mqtt_benchmark_smoke(tmp_path: Path) -> None:
    report = mqtt_stream.run(messages=300, rate=200, seconds=1, sensors=10, backend="sqlite", warmup=20)
    for phase in ("sustained", "latency"):
        figures = report[phase]
        assert figures["seen"] == figures["count"] and figures["lost"] == 0
        assert figures["seen_per_s"] > 0 and 0 < figures["p50_ms"] <= figures["p99_ms"]
    assert report["stored"] == 20 + 300 + 200
    docs = tmp_path / "benchmarks.md"
    mqtt_stream.write_docs(report, docs)
    mqtt_stream.write_docs(report, docs)
    text = docs.read_text()
    assert text.count(mqtt_stream.START) == 1 and "p99" in text
