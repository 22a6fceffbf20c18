"""The wallboard benchmark end to end on a small store, and its render measure on the browser tests' server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.wallboard import END, START, measure_render, run, write_docs

from tests.web.conftest import LiveServer


def test_wallboard_benchmark_smoke(browser: Any, live_server: LiveServer, tmp_path: Path) -> None:
    """Both paths answer over generated readings; the render figure comes from a real page load."""
    report = run(observations=20_000, backends=["sqlite"], repeats=3, loads=0)
    [result] = report["results"]
    assert result["backend"] == "sqlite" and result["observations"] == 20_000 and result["stations"] == 4
    for path in ("ours", "commune", "scan"):
        assert 0 < result[path]["p50_ms"] <= result[path]["p95_ms"]
    assert result["ratio"] > 0
    seconds = measure_render(live_server.url, live_server.token("lanhdao"), 2, browser)
    assert len(seconds) == 2 and all(s > 0 for s in seconds)
    report["render"] = {"store": "smoke", "p50_ms": seconds[0] * 1000, "p95_ms": seconds[1] * 1000, "n": 2}
    docs = tmp_path / "benchmarks.md"
    docs.write_text(f"# Benchmarks\n\n## Other\nkeep me\n\n{START}\nold figures\n{END}\n")
    write_docs(report, docs)
    text = docs.read_text()
    assert "keep me" in text and "old figures" not in text and text.count(START) == 1
    assert "| sqlite | 4 | 20,000 |" in text and "first render" in text
