"""The NGSI-LD upsert benchmark runs end to end at a tiny size and writes only its own section of the docs."""

from __future__ import annotations

from pathlib import Path

from benchmarks.ngsi_ld_upsert import END, START, run, write_docs


def test_ngsi_ld_upsert_benchmark_reports_both_paths(tmp_path: Path) -> None:
    report = run(count=300, backends=["sqlite"], batch=100)
    [result] = report["results"]
    assert result["backend"] == "sqlite" and result["entities"] == 300
    for path in ("ngsi_create", "ngsi_update", "kernel_create", "kernel_update"):
        figures = result[path]
        assert figures["per_s"] > 0 and 0 < figures["p50_ms"] <= figures["p95_ms"]
    assert result["ratio_create"] > 0 and result["ratio_update"] > 0

    docs = tmp_path / "benchmarks.md"
    other = "<!-- ingest:start -->\nkeep me\n<!-- ingest:end -->"
    docs.write_text(f"# Benchmarks\n\n{other}\n\n{START}\nstale figures\n{END}\n")
    write_docs(report, docs)
    text = docs.read_text()
    assert "keep me" in text and "stale figures" not in text and text.count(START) == 1 and text.count(END) == 1
    assert "| sqlite" in text and "300 entities" in text
    fresh = tmp_path / "new.md"
    write_docs(report, fresh)
    assert fresh.read_text().startswith("# Benchmarks") and START in fresh.read_text()
