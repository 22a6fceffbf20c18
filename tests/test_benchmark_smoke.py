"""The ingest benchmark runs end to end on a small batch and writes its section of docs/benchmarks.md."""

from __future__ import annotations

from pathlib import Path

from benchmarks.ingest_observations import END, START, run, write_docs


def test_ingest_benchmark_reports_both_paths(tmp_path: Path) -> None:
    report = run(rows=2000, backends=["sqlite"], batch=500)
    assert report["rows"] == 2000 and report["machine"]["nproc"] >= 1
    [result] = report["results"]
    assert result["backend"] == "sqlite" and result["rows"] == 2000
    for path in ("ours", "raw"):
        figures = result[path]
        assert figures["rows_per_s"] > 0 and figures["seconds"] > 0
        assert 0 < figures["p50_ms"] <= figures["p95_ms"]
    assert result["ratio"] > 0
    assert result["flagged"] >= 0

    # The benchmark rewrites only its own section and keeps the others.
    docs = tmp_path / "benchmarks.md"
    docs.write_text(f"# Benchmarks\n\n## Other\nkeep me\n\n{START}\nold figures\n{END}\n\n## Later\nkeep me too\n")
    write_docs(report, docs)
    text = docs.read_text()
    assert "keep me\n" in text and "keep me too" in text and "old figures" not in text
    assert text.count(START) == 1 and text.count(END) == 1
    assert "| sqlite" in text and "2,000 rows" in text
    fresh = tmp_path / "new.md"
    write_docs(report, fresh)
    assert fresh.read_text().startswith("# Benchmarks") and START in fresh.read_text()
