"""The land lookup benchmark runs end to end at a tiny size (no timing is asserted: this only keeps it working)."""

from __future__ import annotations

import os
from pathlib import Path

from benchmarks.land_lookup import PG_ADMIN, main, postgis_available


def test_benchmark_smoke(tmp_path: Path) -> None:
    docs = tmp_path / "benchmarks.md"
    docs.write_text("# Benchmarks\n\n<!-- ingest:start -->\nkeep me\n<!-- ingest:end -->\n", encoding="utf-8")
    with_postgis = postgis_available(PG_ADMIN)
    args = ["--parcels", "300", "--lookups", "60", "--brute", "10", "--no-install", "--docs", str(docs),
            "--workdir", str(tmp_path / "work"), "--pg-db", f"saola_bench_smoke_{os.getpid()}"]
    # PostGIS (when the server has it) without HTTP servers, then HTTP on the embedded store only.
    out = main([*args, "--http", "0"] if with_postgis else [*args, "--http", "0", "--no-postgis"])
    names = [r.name for r in out["results"]]
    assert names[:2] == ["service: STRtree + row (SQLite)", "STRtree query alone"]
    assert names[-1] == "brute force: shapely scan of all parcels"
    assert ("PostGIS ST_Intersects + GiST (psycopg)" in names) == with_postgis
    assert ("service on PostgreSQL (PostGIS engine)" in names) == with_postgis
    assert all(r.seconds and r.p50 > 0 for r in out["results"])
    assert [count for _, count, _ in out["imports"]] == ([300, 300] if with_postgis else [300])
    differ = [n for n in out["notes"] if " differ on " in n]
    assert len(differ) == (3 if with_postgis else 1) and all(" differ on 0 of " in n for n in differ)
    text = docs.read_text(encoding="utf-8")
    assert "keep me" in text and text.count("<!-- land:start -->") == 1 and "| how |" in text

    out = main([*args, "--http", "15", "--no-postgis"])
    assert [r.name for r in out["results"]][2:4] == ["HTTP: public lookup, STRtree (SQLite)",
                                                     "HTTP baseline: GET /docs, no database"]
    assert all(len(r.seconds) == 15 for r in out["results"][2:4])
    text = docs.read_text(encoding="utf-8")
    assert text.count("<!-- land:start -->") == 1 and "keep me" in text  # replaced, not appended
