"""The wallboard: the overview API over millions of readings, and the first render in Chromium.

    python -m benchmarks.wallboard --observations 10000000 --backends postgresql,sqlite
    python -m benchmarks.wallboard --render-dir saola-data    # first render against an existing `saola demo` store

Same run, same machine, same data:
- overview API: GET /api/dashboards/overview (province and one commune) through the application, which reads
  observation_latest and the hourly/daily rollups only;
- scan: the same KPIs (latest value per station averaged over the province, and an hourly 24-hour trend)
  computed straight from the raw observations table, the way a dashboard without rollups would;
- first render: Chromium (Debian's /usr/bin/chromium) opening /wallboard with a session, until its tiles, map
  layers and operations panel are drawn (the page sets data-rendered-ms); over the demo store when --render-dir
  is given, else over a small seeded store.
Readings are generated at benchmark time (stations through the entities service and one real ingest each; the
bulk history with COPY on PostgreSQL and executemany on SQLite; rollups and latest values computed from it by
SQL the way ingest keeps them). Results go to the `wallboard` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from fastapi.testclient import TestClient
from rich.console import Console
from sqlalchemy import select, text

from benchmarks.docs_section import replace_section
from saola.config import Settings
from saola.core.auth.context import system_actor
from saola.core.auth.service import create_user
from saola.core.entities.schemas import EntityCreate
from saola.core.entities.service import upsert_entities
from saola.core.observations.models import Subject
from saola.core.observations.service import ingest
from saola.core.units.models import Unit
from saola.core.units.service import load_official_units
from saola.db.engine import make_engine, make_session_factory, transaction
from saola.packs.manager import get_registry

DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
START, END = "<!-- wallboard:start -->", "<!-- wallboard:end -->"
PG_ADMIN = os.environ.get("SAOLA_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
BENCH_DB = "saola_bench_wallboard"
SECRET = "benchmark-secret-key-that-is-long-enough-0123456789"
PROVINCE = "68"
INDICATORS = ("env.pm25", "env.pm10", "env.aqi_vn", "env.no2", "env.o3")
STEP_MINUTES = 10
CHROMIUM = "/usr/bin/chromium"
console = Console()


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q) * 1000) if values else float("nan")


def _timed(fn: Callable[[], Any], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def _settings(backend: str, folder: Path) -> Settings:
    if backend == "postgresql":
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{BENCH_DB}"')
        url = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1) + f"/{BENCH_DB}"
    else:
        url = f"sqlite:///{folder / 'bench.db'}"
    return Settings(data_dir=folder, database_url=url, secret_key=SECRET, demo_mode=False, run_jobs=False)


def generate(settings: Settings, observations: int, per_series: int = 5000) -> dict[str, Any]:
    """Stations in every commune of the province and `observations` readings of five indicators, with rollups.

    Each station's series holds `per_series` readings ten minutes apart (5,000: about 35 days)."""
    from saola.cli import upgrade_database

    upgrade_database(settings)
    engine = make_engine(settings)
    factory = make_session_factory(engine)
    actor = system_actor("benchmark")
    with transaction(factory) as session:
        load_official_units(session)
        create_user(session, actor=actor, username="bench", password="bench-password-1", role="leader",
                    scope=PROVINCE)
        communes = list(session.scalars(select(Unit.code).where(Unit.parent_code == PROVINCE).order_by(Unit.code)))
    stations = max(4, observations // (len(INDICATORS) * per_series))
    steps = max(2, observations // (stations * len(INDICATORS)))
    rng = np.random.default_rng(68)
    items = [EntityCreate(type="env.air_station", name=f"Trạm {i + 1:04d}", unit_code=communes[i % len(communes)],
                          external_id=f"B{i:05d}", geometry={"type": "Point", "coordinates": [
                              float(108.0 + rng.random()), float(11.5 + rng.random())]}) for i in range(stations)]
    registry = get_registry(tuple(settings.disabled_packs))
    for start in range(0, len(items), 500):
        with transaction(factory) as session:
            upsert_entities(session, actor=actor, registry=registry, items=items[start:start + 500])
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    first = now - timedelta(minutes=STEP_MINUTES * steps)
    with transaction(factory) as session:  # one real reading per station: the kernel creates the subjects
        ids = [str(e) for e in session.scalars(text("SELECT id FROM entities WHERE type = 'env.air_station'"))]
    for start in range(0, len(ids), 2000):
        with transaction(factory) as session:
            ingest(session, actor=actor, items=[{"indicator": "env.pm25", "entity": i, "ts": first.isoformat(),
                                                 "value": 20.0} for i in ids[start:start + 2000]], now=now)
    with factory() as session:
        subjects = list(session.scalars(select(Subject.id).where(Subject.kind == "entity")))
        ind_ids = [session.scalar(text("SELECT id FROM indicators WHERE code = :c"), {"c": c}) for c in INDICATORS]
    time.sleep(2)  # let PostgreSQL's background fold of those first readings finish (500 ms interval)
    t0 = time.perf_counter()
    _bulk(engine, settings, subjects, ind_ids, first, steps)
    generated = time.perf_counter() - t0
    engine.dispose()
    return {"stations": len(subjects), "steps": steps, "observations": len(subjects) * len(ind_ids) * steps,
            "generate_s": generated}


def _bulk(engine: Any, settings: Settings, subjects: list[int], ind_ids: list[int], first: datetime,
          steps: int) -> None:
    """Raw readings, then hourly and daily rollups and latest values computed from them."""
    sqlite = settings.is_sqlite
    offsets = np.arange(1, steps + 1)
    daily = np.sin(offsets * STEP_MINUTES / 1440 * 2 * np.pi)
    with engine.begin() as conn:
        if not sqlite:  # PostgreSQL folds queued rollup deltas in the background: drop what the seeding queued
            conn.execute(text("DELETE FROM observation_rollup_queue"))
        conn.execute(text("DELETE FROM observations"))
        conn.execute(text("DELETE FROM observation_rollups_hourly"))
        conn.execute(text("DELETE FROM observation_rollups_daily"))
        conn.execute(text("DELETE FROM observation_latest"))
    if sqlite:
        rows = []
        with engine.begin() as conn:
            for sid in subjects:
                for iid in ind_ids:
                    values = 40 + 20 * daily + (sid % 17)
                    for k, v in zip(offsets, values, strict=True):
                        ts = (first + timedelta(minutes=STEP_MINUTES * int(k))).strftime("%Y-%m-%d %H:%M:%S.000000")
                        rows.append({"i": iid, "s": sid, "t": ts, "v": float(v)})
                if len(rows) > 200_000:
                    conn.execute(text("INSERT INTO observations (indicator_id, subject_id, ts, value, quality) "
                                      "VALUES (:i, :s, :t, :v, 0)"), rows)
                    rows = []
            if rows:
                conn.execute(text("INSERT INTO observations (indicator_id, subject_id, ts, value, quality) "
                                  "VALUES (:i, :s, :t, :v, 0)"), rows)
            hour, day = "substr(ts, 1, 13) || ':00:00.000000'", (
                "strftime('%Y-%m-%d %H:%M:%S.000000', strftime('%Y-%m-%d', ts, '+7 hours'), '-7 hours')")
            for table, bucket in (("observation_rollups_hourly", hour), ("observation_rollups_daily", day)):
                conn.execute(text(
                    f"INSERT INTO {table} (indicator_id, subject_id, bucket, count, sum, min, max, last_ts, "
                    f"last_value) SELECT indicator_id, subject_id, {bucket}, count(*), sum(value), min(value), "
                    f"max(value), max(ts), 0 FROM observations GROUP BY indicator_id, subject_id, {bucket}"))
                conn.execute(text(
                    f"UPDATE {table} SET last_value = (SELECT o.value FROM observations o WHERE "
                    f"o.indicator_id = {table}.indicator_id AND o.subject_id = {table}.subject_id "
                    f"AND o.ts = {table}.last_ts)"))
            conn.execute(text(
                "INSERT INTO observation_latest (indicator_id, subject_id, ts, value, quality) "
                "SELECT indicator_id, subject_id, max(ts), value, 0 FROM observations "
                "GROUP BY indicator_id, subject_id"))
        return
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        with cur.copy("COPY observations (indicator_id, subject_id, ts, value, quality) FROM STDIN") as copy:
            stamps = [(first + timedelta(minutes=STEP_MINUTES * int(k))).isoformat() for k in offsets]
            for sid in subjects:
                for iid in ind_ids:
                    values = 40 + 20 * daily + (sid % 17)
                    copy.write("".join(f"{iid}\t{sid}\t{ts}\t{v:.2f}\t0\n" for ts, v in zip(stamps, values,
                                                                                         strict=True)))
        for table, bucket in (("observation_rollups_hourly", "date_trunc('hour', ts AT TIME ZONE 'UTC')"),
                              ("observation_rollups_daily",
                               "date_trunc('day', ts AT TIME ZONE 'UTC' + interval '7 hours') - interval '7 hours'")):
            cur.execute(
                f"INSERT INTO {table} (indicator_id, subject_id, bucket, count, sum, min, max, last_ts, last_value) "
                f"SELECT indicator_id, subject_id, ({bucket}) AT TIME ZONE 'UTC', count(*), sum(value), min(value), "
                f"max(value), max(ts), (array_agg(value ORDER BY ts DESC))[1] FROM observations "
                f"GROUP BY indicator_id, subject_id, 3 ON CONFLICT (indicator_id, subject_id, bucket) DO UPDATE SET "
                f"count = EXCLUDED.count, sum = EXCLUDED.sum, min = EXCLUDED.min, max = EXCLUDED.max, "
                f"last_ts = EXCLUDED.last_ts, last_value = EXCLUDED.last_value")
        cur.execute("INSERT INTO observation_latest (indicator_id, subject_id, ts, value, quality) "
                    "SELECT DISTINCT ON (indicator_id, subject_id) indicator_id, subject_id, ts, value, 0 "
                    "FROM observations ORDER BY indicator_id, subject_id, ts DESC "
                    "ON CONFLICT (indicator_id, subject_id) DO UPDATE SET ts = EXCLUDED.ts, value = EXCLUDED.value")
        raw.commit()
        cur.execute("ANALYZE")
        raw.commit()
    finally:
        raw.close()


SCAN_SQL = """
SELECT o.indicator_id, avg(o.value), max(o.ts) FROM observations o
JOIN subjects s ON s.id = o.subject_id JOIN units u ON u.code = s.unit_code
WHERE (u.path = :p OR u.path LIKE :pp) AND o.ts >= :since
GROUP BY o.indicator_id
"""
SCAN_TREND_SQL = """
SELECT o.indicator_id, {hour} AS b, avg(o.value) FROM observations o
JOIN subjects s ON s.id = o.subject_id JOIN units u ON u.code = s.unit_code
WHERE (u.path = :p OR u.path LIKE :pp) AND o.ts >= :since
GROUP BY o.indicator_id, b
"""


def measure_api(settings: Settings, repeats: int) -> dict[str, Any]:
    """Overview through the application against the same figures scanned from raw readings."""
    from saola.app import create_app

    app = create_app(settings)
    with TestClient(app) as client:
        token = client.post("/api/auth/token", data={"username": "bench", "password": "bench-password-1"}).json()
        headers = {"Authorization": f"Bearer {token['access_token']}"}
        commune = client.get("/api/dashboards/overview", headers=headers).json()["children"][0]["code"]

        def province() -> None:
            r = client.get("/api/dashboards/overview", headers=headers)
            assert r.status_code == 200, r.text

        def one_commune() -> None:
            assert client.get("/api/dashboards/overview", params={"unit": commune}, headers=headers).status_code == 200

        province()
        ours = _timed(province, repeats)
        ours_commune = _timed(one_commune, repeats)
        engine = app.state.engine
        hour = ("substr(o.ts, 1, 13)" if settings.is_sqlite else "date_trunc('hour', o.ts)")
        since_latest = datetime.now(UTC) - timedelta(minutes=2 * STEP_MINUTES)
        since_trend = datetime.now(UTC) - timedelta(hours=24)
        if settings.is_sqlite:
            since_latest_p = since_latest.strftime("%Y-%m-%d %H:%M:%S.000000")
            since_trend_p: Any = since_trend.strftime("%Y-%m-%d %H:%M:%S.000000")
        else:
            since_latest_p, since_trend_p = since_latest, since_trend  # type: ignore[assignment]

        def scan() -> None:
            with engine.connect() as conn:
                conn.execute(text(SCAN_SQL), {"p": "VN.68", "pp": "VN.68.%", "since": since_latest_p}).all()
                conn.execute(text(SCAN_TREND_SQL.format(hour=hour)),
                             {"p": "VN.68", "pp": "VN.68.%", "since": since_trend_p}).all()

        scanned = _timed(scan, max(2, repeats // 10))
    return {"ours": ours, "commune": ours_commune, "scan": scanned}


def measure_render(url: str, token: str, loads: int, browser: Any = None) -> list[float]:
    """Seconds from navigation to the wallboard's first full render, in Chromium, `loads` times."""
    if browser is None:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            own = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
                "--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking"])
            try:
                return measure_render(url, token, loads, own)
            finally:
                own.close()
    out = []
    context = browser.new_context(viewport={"width": 1920, "height": 1080})
    try:
        context.add_init_script(f"localStorage.setItem('saola.token', {token!r});")
        page = context.new_page()
        page.goto(url + "/wallboard")  # warm: the browser's cache holds the libraries, as on a wall screen
        page.wait_for_selector("body[data-rendered-ms]", timeout=60_000)
        for _ in range(loads):
            page.goto(url + "/wallboard")
            page.wait_for_selector("body[data-rendered-ms]", timeout=60_000)
            out.append(float(page.get_attribute("body", "data-rendered-ms") or "nan") / 1000)
    finally:
        context.close()
    return out


def _serve(settings: Settings) -> tuple[str, Any, Any]:
    import socket
    import threading

    import uvicorn

    from saola.app import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", server, thread


def run(observations: int = 10_000_000, backends: list[str] | None = None, repeats: int = 200, loads: int = 10,
        render_dir: Path | None = None, render_user: tuple[str, str] = ("lanhdao", "demo-lanhdao")) -> dict[str, Any]:
    """Generate, measure and return the figures (see the module docstring)."""
    import httpx

    report: dict[str, Any] = {"observations": observations, "results": [], "render": None, "machine": {
        "python": platform.python_version(), "nproc": os.cpu_count(), "platform": platform.platform()}}
    for backend in backends or ["postgresql"]:
        folder = Path(tempfile.mkdtemp(prefix=f"saola-bench-wall-{backend}-"))
        try:
            settings = _settings(backend, folder)
            console.print(f"[bold]{backend}[/]: generating {observations:,} readings")
            made = generate(settings, observations)
            timings = measure_api(settings, repeats)
            report["results"].append({"backend": backend, **made, **{
                k: {"p50_ms": _pct(v, 50), "p95_ms": _pct(v, 95), "n": len(v)} for k, v in timings.items()},
                "ratio": _pct(timings["scan"], 50) / _pct(timings["ours"], 50)})
            if loads and render_dir is None and backend == (backends or ["postgresql"])[-1]:
                url, server, thread = _serve(settings)
                try:
                    token = httpx.post(f"{url}/api/auth/token", data={"username": "bench",
                                                                       "password": "bench-password-1"}).json()
                    seconds = measure_render(url, token["access_token"], loads)
                    report["render"] = {"store": f"generated ({backend})", "p50_ms": _pct(seconds, 50),
                                        "p95_ms": _pct(seconds, 95), "n": len(seconds)}
                finally:
                    server.should_exit = True
                    thread.join(timeout=10)
        finally:
            if backend == "postgresql":
                with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
            shutil.rmtree(folder, ignore_errors=True)
    if loads and render_dir is not None:
        settings = Settings(data_dir=render_dir, secret_key=SECRET, demo_mode=True, run_jobs=False)
        url, server, thread = _serve(settings)
        try:
            token = httpx.post(f"{url}/api/auth/token", data={"username": render_user[0],
                                                               "password": render_user[1]}).json()
            seconds = measure_render(url, token["access_token"], loads)
            report["render"] = {"store": "the `saola demo` store", "p50_ms": _pct(seconds, 50),
                                "p95_ms": _pct(seconds, 95), "n": len(seconds)}
        except Exception as exc:  # keep the API figures of a long run even when the browser part fails
            console.print(f"[red]first render not measured: {exc}[/]")
        finally:
            server.should_exit = True
            thread.join(timeout=10)
    return report


def write_docs(report: dict[str, Any], path: Path = DOCS) -> None:
    """Replace the wallboard section of docs/benchmarks.md with this run's figures."""
    m = report["machine"]
    lines = [START, "## Wallboard: overview API and first render", "",
             f"`python -m benchmarks.wallboard --observations {report['observations']}` — Python {m['python']}, "
             f"{m['nproc']} cores (shared), {m['platform']}.", "",
             "The overview answers every tile of the province (KPI value, target, status, data age, 24-hour or "
             "monthly trend) from `observation_latest` and the rollups; *scan* computes the same figures from the "
             "raw readings.", "",
             "| store | stations | readings | overview p50 / p95 (province) | overview p50 / p95 (commune) | "
             "scan p50 / p95 | scan ÷ overview |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in report["results"]:
        lines.append(f"| {r['backend']} | {r['stations']:,} | {r['observations']:,} | "
                     f"{r['ours']['p50_ms']:.1f} / {r['ours']['p95_ms']:.1f} ms | "
                     f"{r['commune']['p50_ms']:.1f} / {r['commune']['p95_ms']:.1f} ms | "
                     f"{r['scan']['p50_ms']:.0f} / {r['scan']['p95_ms']:.0f} ms | {r['ratio']:.0f}× |")
    lines += ["", "Target: overview p95 within 50 ms with 10 million readings. "
              + "; ".join(f"{r['backend']}: province p95 {r['ours']['p95_ms']:.0f} ms "
                          f"({'met' if r['ours']['p95_ms'] <= 50 else 'missed'}), commune p95 "
                          f"{r['commune']['p95_ms']:.0f} ms ({'met' if r['commune']['p95_ms'] <= 50 else 'missed'})"
                          for r in report["results"]) + "."]
    if any(r["ours"]["p95_ms"] > 50 for r in report["results"]):
        lines += ["", "Why it misses. The answer does not grow with the history (the scan does), but on this shared "
                  "machine each of the overview's eight statements costs a few milliseconds of round trip to a "
                  "PostgreSQL busy with other sessions' tests, on top of sign-in checks and the JSON answer "
                  "(a commune, with a handful of subjects, is the fixed part). The province adds its 400 stations: "
                  "the aggregate over their latest values and the current hour of the trend (closed hours are reused "
                  "for five minutes). Closing the gap would need per-unit rollups kept at ingest (one row per unit "
                  "and bucket instead of one per station) or an answer cache invalidated by the bus."]
    render = report.get("render")
    if render:
        verdict = "met" if render["p95_ms"] <= 1500 else "missed"
        lines += ["", f"Wallboard first render in Chromium at 1920×1080 (navigation until tiles, map layers and "
                      f"operations are drawn; libraries cached, as on a wall screen), {render['store']}: "
                      f"p50 {render['p50_ms']:.0f} ms, p95 {render['p95_ms']:.0f} ms over {render['n']} loads "
                      f"(target 1.5 s: {verdict})."]
    lines += ["", "Reproduce: `python -m benchmarks.wallboard --observations 10000000 --backends postgresql "
              "--render-dir saola-data` (after `saola demo --seed-only`)."]
    lines.append(END)
    replace_section(path, START, END, "\n".join(lines) + "\n")


def main() -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--observations", type=int, default=10_000_000)
    parser.add_argument("--backends", default="postgresql")
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--loads", type=int, default=10)
    parser.add_argument("--render-dir", type=Path, default=None, help="an existing `saola demo` data folder")
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args()
    report = run(args.observations, [b for b in args.backends.split(",") if b], args.repeats, args.loads,
                 args.render_dir)
    console.print(report)
    if not args.no_docs:
        write_docs(report)


if __name__ == "__main__":
    main()
