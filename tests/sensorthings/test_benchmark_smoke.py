"""The SensorThings benchmark runs end to end at a tiny size and writes only its own docs section."""

from __future__ import annotations

from pathlib import Path

from benchmarks import sensorthings_create


def test_sensorthings_benchmark_smoke(tmp_path: Path) -> None:
    report = sensorthings_create.run(rows=200, batch=100, things=4, backend="sqlite")
    assert report["sta_rows"] == report["rest_rows"] == 200  # every reading was stored and rolled up (run checks)
    assert report["sta_per_s"] > 0 and report["rest_per_s"] > 0 and report["ratio"] > 0
    assert 0 < report["sta_p50_ms"] <= report["sta_p95_ms"]
    docs = tmp_path / "benchmarks.md"
    docs.write_text(f"# Benchmarks\n\nkeep me\n\n{sensorthings_create.START}\nold\n{sensorthings_create.END}\n")
    sensorthings_create.write_docs([report], docs)
    sensorthings_create.write_docs([report], docs)
    text = docs.read_text()
    assert "keep me" in text and "\nold\n" not in text and text.count(sensorthings_create.START) == 1
    assert "| sqlite |" in text
