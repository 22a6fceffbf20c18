"""The citizen reports benchmark runs end to end at a tiny size (no timing is asserted: this only keeps it working)."""

from __future__ import annotations

from pathlib import Path

from benchmarks.citizen_reports import main


def test_benchmark_smoke(tmp_path: Path) -> None:
    docs = tmp_path / "benchmarks.md"
    docs.write_text("# Benchmarks\n\n<!-- ingest:start -->\nkeep me\n<!-- ingest:end -->\n", encoding="utf-8")
    out = main(["--existing", "30", "--submissions", "5", "--reads", "2", "--backends", "sqlite", "--docs",
                str(docs), "--workdir", str(tmp_path / "work")])
    run = out["runs"][0]
    assert [name for name, _ in run["results"]][:3] == ["submit: the pack's whole path",
                                                        "open_case: the kernel's case alone",
                                                        "plain INSERT into cases"]
    assert all(len(values) == (5 if i < 3 else 2) for i, (_, values) in enumerate(run["results"]))
    assert run["features"] == 35  # every submitted report has a point; open_case and INSERT rows have none
    text = docs.read_text(encoding="utf-8")
    assert "keep me" in text and text.count("<!-- citizen_reports:start -->") == 1 and "| backend | how |" in text
