"""The rules benchmark runs end to end at a tiny size (no timing is asserted: the machine is shared)."""

from __future__ import annotations

from pathlib import Path

from benchmarks import rules_ingest


def test_benchmark_smoke(tmp_path: Path) -> None:
    args = rules_ingest.parser().parse_args(["--backends", "sqlite", "--minutes", "2", "--rules", "40",
                                             "--firing", "2", "--repeats", "1", "--rate", "2000", "--batches", "100",
                                             "--seconds", "0.3", "--no-docs"])
    args.load = 0.0
    through, lat = rules_ingest.run(args)
    assert through[0]["rows"] == 2 * 200 * 4 and through[0]["base"] > 0 and through[0]["loaded"] > 0
    assert through[0]["evaluations"] > 0
    assert lat[0]["crossings"] > 0 and lat[0]["p99_ms"] >= lat[0]["p50_ms"] > 0
    docs = tmp_path / "benchmarks.md"
    docs.write_text("# Benchmarks\n\n<!-- ingest:start -->\nkept\n<!-- ingest:end -->\n", encoding="utf-8")
    rules_ingest.write_docs(rules_ingest._markdown(through, lat, args), docs)
    rules_ingest.write_docs(rules_ingest._markdown(through, lat, args), docs)  # replaced, not appended
    text = docs.read_text(encoding="utf-8")
    assert "kept" in text and text.count(rules_ingest.START) == 1 and "| sqlite |" in text
