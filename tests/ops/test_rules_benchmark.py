"""The rules benchmarks run end to end at a tiny size (no timing is asserted: the machine is shared)."""

from __future__ import annotations

from pathlib import Path

from benchmarks import alert_latency, rules_ingest


def _docs(tmp_path: Path) -> Path:
    docs = tmp_path / "benchmarks.md"
    docs.write_text("# Benchmarks\n\n<!-- ingest:start -->\nkept\n<!-- ingest:end -->\n", encoding="utf-8")
    return docs


def test_throughput_benchmark_smoke(tmp_path: Path) -> None:
    args = rules_ingest.parser().parse_args(["--backends", "sqlite", "--minutes", "2", "--rules", "40",
                                             "--firing", "2", "--repeats", "1", "--no-docs"])
    args.load = 0.0
    through = rules_ingest.run(args)
    assert through[0]["rows"] == 2 * 200 * 4 and through[0]["base"] > 0 and through[0]["loaded"] > 0
    assert through[0]["evaluations"] > 0
    docs = _docs(tmp_path)
    rules_ingest.write_docs(rules_ingest._markdown(through, args), docs)
    rules_ingest.write_docs(rules_ingest._markdown(through, args), docs)  # replaced, not appended
    text = docs.read_text(encoding="utf-8")
    assert "kept" in text and text.count(rules_ingest.START) == 1 and "| sqlite |" in text


def test_alert_latency_benchmark_smoke(tmp_path: Path) -> None:
    args = alert_latency.parser().parse_args(["--backends", "sqlite", "--rules", "40", "--firing", "2",
                                              "--rate", "1000", "--batches", "100", "--seconds", "0.5",
                                              "--no-docs"])
    args.load = 0.0
    [run] = alert_latency.run(args)
    # every crossing reading reached the stream, and so did an alert for each of them
    assert run["reading"]["n"] == run["batches"] == 5 and run["alert"]["n"] == run["crossings"] == 10
    assert run["alerts_written"] == 10 and run["alert"]["p99"] >= run["alert"]["p50"] > 0
    assert not run["threaded"]  # SQLite: the rules run in the writer's thread
    docs = _docs(tmp_path)
    alert_latency.write_docs(alert_latency._markdown([run], args), docs)
    alert_latency.write_docs(alert_latency._markdown([run], args), docs)
    text = docs.read_text(encoding="utf-8")
    assert "kept" in text and text.count(alert_latency.START) == 1 and "their alerts" in text
