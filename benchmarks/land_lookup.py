"""Point lookup at city scale: the in-process STRtree service against PostGIS and a brute-force scan.

    python -m benchmarks.land_lookup --parcels 100000

Same run, same machine, same parcels (the demo generator's Đà Lạt shapes) and the same query points:
- import throughput: a generated GeoPackage through `saola import` code into SQLite and into PostgreSQL;
- service: saola.domains.land.service.lookup_point on the embedded SQLite store (STRtree + row fetch);
- engine only: the STRtree query alone;
- HTTP: GET /api/public/land/lookup on a uvicorn server in another process, one keep-alive client;
- PostGIS: ST_Intersects and ST_Contains with the GiST index, via psycopg (prepared), returning the same row;
- brute force: shapely.intersects of the point with every parcel (on a subsample).
Lookups are sequential from one client, so lookups/s is 1 / mean latency. The PostGIS package
(postgresql-15-postgis-3) is installed with apt-get when missing, unless --no-install.
Results go to the `land` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg
import pyogrio
import shapely
from rich.console import Console
from rich.table import Table

from benchmarks.docs_section import replace_section
from saola.config import Settings
from saola.core.auth.context import system_actor
from saola.core.units.service import load_official_units
from saola.db.engine import make_engine, make_session_factory, transaction
from saola.domains.land import demo, service
from saola.domains.land.importer import import_parcels
from saola.domains.land.spatial import STRTREE, forget_indexes, parcel_index, postgis_ready

DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
START, END = "<!-- land:start -->", "<!-- land:end -->"
PG_ADMIN = os.environ.get("SAOLA_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
BENCH_DB = "saola_bench_land"
SECRET = "benchmark-secret-key-that-is-long-enough-0123456789"
console = Console()

ROW_SQL = ("SELECT id, unit_code, sheet_no, parcel_no, area_m2, land_use, primary_use, allowed_use, "
           "building_density_pct, floors_min, floors_max, land_use_coefficient, setback_m, geom_wkb "
           "FROM land_parcels WHERE {predicate}(geom, ST_SetSRID(ST_MakePoint(%s, %s), 4326)) "
           "ORDER BY unit_code, sheet_no, parcel_no")


@dataclass
class Result:
    """Latencies of one way of answering."""

    name: str
    seconds: list[float]
    note: str = ""

    @property
    def p50(self) -> float:
        """Median latency in ms."""
        return float(np.percentile(self.seconds, 50) * 1000)

    @property
    def p99(self) -> float:
        """99th percentile latency in ms."""
        return float(np.percentile(self.seconds, 99) * 1000)

    @property
    def rate(self) -> float:
        """Sequential lookups per second."""
        return len(self.seconds) / sum(self.seconds)


def _keys(parcels: list[dict[str, Any]]) -> list[tuple[str, int, int]]:
    return [(p["commune"]["code"], p["sheet_no"], p["parcel_no"]) for p in parcels]


def timed(points: Iterable[tuple[float, float]], call: Callable[[float, float], Any]) -> tuple[list[float], list]:
    """Latency of each call, and what each call answered."""
    seconds, answers = [], []
    for lon, lat in points:
        started = time.perf_counter()
        answer = call(lon, lat)
        seconds.append(time.perf_counter() - started)
        answers.append(answer)
    return seconds, answers


# --- setup -------------------------------------------------------------------------------------------------


def postgis_available(admin_url: str) -> bool:
    """True when the PostgreSQL server can create the postgis extension."""
    try:
        with psycopg.connect(admin_url, connect_timeout=5) as conn:
            return bool(conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'postgis'").fetchone())
    except psycopg.Error:
        return False


def install_postgis(admin_url: str) -> bool:
    """Install the Debian package postgresql-15-postgis-3 when PostGIS is missing (needs root and apt-get)."""
    if postgis_available(admin_url):
        return True
    if not shutil.which("apt-get") or os.geteuid() != 0:
        console.print("[yellow]PostGIS is missing and apt-get is not usable here[/yellow]")
        return False
    console.print("installing postgresql-15-postgis-3 ...")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    command = ["apt-get", "install", "-y", "-q", "postgresql-15-postgis-3"]
    if subprocess.run(command, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
        subprocess.run(command, env=env, capture_output=True)
    return postgis_available(admin_url)


def fresh_pg_database(admin_url: str, name: str) -> str:
    """Drop and create a database; return its SQLAlchemy URL."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    base = admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}/{name}"


def prepare_store(settings: Settings) -> Any:
    """Migrate a database, load the unit tree; return a session factory."""
    from saola.cli import upgrade_database

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade_database(settings)
    factory = make_session_factory(make_engine(settings))
    with transaction(factory) as session:
        load_official_units(session)
    return factory


def write_geopackage(rows: list[dict[str, Any]], path: Path) -> None:
    """The generated parcels as a cadastral GeoPackage (attributes under our field names)."""
    geometry = np.array([r["geom_wkb"] for r in rows], dtype=object)
    fields = {
        "commune": np.array([r["unit_code"] for r in rows], dtype=object),
        "sheet_no": np.array([r["sheet_no"] for r in rows], dtype=np.int64),
        "parcel_no": np.array([r["parcel_no"] for r in rows], dtype=np.int64),
        "area_m2": np.array([r["area_m2"] for r in rows], dtype=np.float64),
        "land_use": np.array(["+".join(u["code"] for u in r["land_use"]) for r in rows], dtype=object),
        "land_use_area": np.array(["+".join(str(u["area_m2"]) for u in r["land_use"]) for r in rows], dtype=object),
        "allowed_use": np.array([r["allowed_use"] for r in rows], dtype=object),
        "building_density_pct": np.array([np.nan if r["building_density_pct"] is None else r["building_density_pct"]
                                          for r in rows], dtype=np.float64),
        "holder_name": np.array([r.get("holder_name") for r in rows], dtype=object),
        "certificate_no": np.array([r.get("certificate_no") for r in rows], dtype=object),
    }
    pyogrio.raw.write(str(path), geometry, list(fields.values()), list(fields), driver="GPKG", crs="EPSG:4326",
                      geometry_type="MultiPolygon")


def timed_import(factory: Any, path: Path) -> tuple[float, int]:
    """Seconds to import the file in one transaction, and the parcels written."""
    started = time.perf_counter()
    with transaction(factory) as session:
        report = import_parcels(session, actor=system_actor("benchmark"), path=path)
    return time.perf_counter() - started, report.imported


def query_points(geoms: np.ndarray, count: int, seed: int = 2024) -> list[tuple[float, float]]:
    """Mostly points inside random parcels, one in ten anywhere in the area (often between parcels or outside)."""
    rng = np.random.default_rng(seed)
    inside = shapely.point_on_surface(geoms[rng.choice(len(geoms), count)])
    x, y = shapely.get_x(inside), shapely.get_y(inside)
    x0, y0, x1, y1 = shapely.total_bounds(geoms)
    anywhere = rng.random(count) < 0.1
    x[anywhere] = rng.uniform(x0, x1, anywhere.sum())
    y[anywhere] = rng.uniform(y0, y1, anywhere.sum())
    return [(float(a), float(b)) for a, b in zip(x, y, strict=True)]


def serve(settings: Settings, log: Path) -> tuple[subprocess.Popen, str]:
    """The application on a free port, in its own process (so client and server do not share one GIL)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "SAOLA_DATABASE_URL": settings.url, "SAOLA_DATA_DIR": str(settings.data_dir),
           "SAOLA_SECRET_KEY": SECRET, "SAOLA_LOG_LEVEL": "WARNING"}
    process = subprocess.Popen([sys.executable, "-m", "uvicorn", "saola.app:create_app", "--factory", "--host",
                                "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log"],
                               env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/api/health", timeout=2).status_code < 500:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"the benchmark server did not start: {log.read_text(errors='replace')[-2000:]}")


def http_lookups(stores: dict[str, Settings], points: list[tuple[float, float]], work: Path,
                 ) -> dict[str, tuple[list[float], list]]:
    """The public lookup over HTTP on one server per store, taking turns, and GET /docs as the baseline."""
    servers = {name: serve(settings, work / f"server-{k}.log") for k, (name, settings) in enumerate(stores.items())}
    try:
        with contextlib.ExitStack() as stack:
            clients = {name: stack.enter_context(httpx.Client(base_url=url, timeout=30))
                       for name, (_, url) in servers.items()}
            ways: dict[str, Callable[[float, float], Any]] = {
                name: (lambda lon, lat, c=client: _keys(c.get("/api/public/land/lookup",
                                                              params={"lon": lon, "lat": lat}).json()["parcels"]))
                for name, client in clients.items()}
            first = next(iter(clients.values()))
            ways["HTTP baseline: GET /docs, no database"] = lambda _lon, _lat: first.get("/docs").status_code
            interleaved(points[:100], ways)
            return interleaved(points, ways)
    finally:
        for process, _ in servers.values():
            process.terminate()
            process.wait(timeout=30)


# --- run ---------------------------------------------------------------------------------------------------


def interleaved(points: list[tuple[float, float]], ways: dict[str, Callable[[float, float], Any]],
                ) -> dict[str, tuple[list[float], list]]:
    """Time every way on every point, taking turns point by point (rotating who goes first).

    On a shared machine the load changes from minute to minute; taking turns gives every way the same
    conditions, so their ratio holds even when the absolute figures move.
    """
    names = list(ways)
    seconds: dict[str, list[float]] = {n: [] for n in names}
    answers: dict[str, list] = {n: [] for n in names}
    for k, (lon, lat) in enumerate(points):
        for name in names[k % len(names):] + names[: k % len(names)]:
            started = time.perf_counter()
            answer = ways[name](lon, lat)
            seconds[name].append(time.perf_counter() - started)
            answers[name].append(answer)
    return {n: (seconds[n], answers[n]) for n in names}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Everything the benchmark measures, as a dict; the temporary folder and database go away even on failure."""
    work = Path(args.workdir or tempfile.mkdtemp(prefix="saola-bench-land-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        return measure(args, work)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
        if args.postgis and postgis_available(args.pg_url):
            with psycopg.connect(args.pg_url, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{args.pg_db}" WITH (FORCE)')


def measure(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Generate, import, then time every way of answering on the same points."""
    out: dict[str, Any] = {"parcels": args.parcels, "results": [], "imports": [], "notes": [],
                           "load": os.getloadavg()[0]}

    started = time.perf_counter()
    rows = demo.generate(args.parcels, seed=68)
    out["generate_s"] = time.perf_counter() - started
    geoms = shapely.from_wkb([r["geom_wkb"] for r in rows])
    gpkg = work / "parcels.gpkg"
    if gpkg.exists():
        gpkg.unlink()
    write_geopackage(rows, gpkg)
    points = query_points(geoms, args.lookups)
    console.print(f"{len(rows):,} parcels generated in {out['generate_s']:.1f} s; {len(points):,} query points")

    # The same GeoPackage into both stores.
    sqlite_dir = work / "sqlite"
    shutil.rmtree(sqlite_dir, ignore_errors=True)
    sqlite_settings = Settings(data_dir=sqlite_dir, secret_key=SECRET)
    sqlite_factory = prepare_store(sqlite_settings)
    seconds, written = timed_import(sqlite_factory, gpkg)
    out["imports"].append(("GeoPackage -> SQLite (embedded)", written, seconds))
    with_postgis = args.postgis and (install_postgis(args.pg_url) if args.install else postgis_available(args.pg_url))
    pg_settings = pg_factory = dsn = None
    if with_postgis:
        pg_url = fresh_pg_database(args.pg_url, args.pg_db)
        pg_settings = Settings(data_dir=work / "pg", database_url=pg_url, secret_key=SECRET)
        pg_factory = prepare_store(pg_settings)
        seconds, written = timed_import(pg_factory, gpkg)
        out["imports"].append(("GeoPackage -> PostgreSQL 15 + PostGIS", written, seconds))
        with pg_factory() as session:
            assert postgis_ready(session), "the land migration did not add the PostGIS column"
        dsn = pg_url.replace("postgresql+psycopg://", "postgresql://", 1)
    else:
        out["notes"].append("PostGIS was not available: its rows are missing")

    forget_indexes()
    with contextlib.ExitStack() as stack:
        session = stack.enter_context(sqlite_factory())
        started = time.perf_counter()
        parcel_index(session)
        out["strtree_build_s"] = time.perf_counter() - started
        ways: dict[str, Callable[[float, float], Any]] = {
            "service: STRtree + row (SQLite)": lambda lon, lat: _keys(service.lookup_point(
                session, actor=None, lon=lon, lat=lat)["parcels"]),
            "STRtree query alone": lambda lon, lat: STRTREE.at_point(session, lon, lat),
        }
        notes = {"service: STRtree + row (SQLite)": "what the API serves, no HTTP",
                 "STRtree query alone": "ids only"}
        if with_postgis:
            conn = stack.enter_context(psycopg.connect(dsn, autocommit=True))
            conn.execute("VACUUM ANALYZE land_parcels")
            started = time.perf_counter()
            conn.execute("REINDEX INDEX ix_land_parcels_geom")
            out["gist_build_s"] = time.perf_counter() - started
            for predicate in ("ST_Intersects", "ST_Contains"):
                name = f"PostGIS {predicate} + GiST (psycopg)"
                ways[name] = lambda lon, lat, sql=ROW_SQL.format(predicate=predicate): [
                    (r[1], r[2], r[3]) for r in conn.execute(sql, (lon, lat), prepare=True).fetchall()]
                notes[name] = "same row, prepared, local TCP"
            pg_session = stack.enter_context(pg_factory())
            ways["service on PostgreSQL (PostGIS engine)"] = lambda lon, lat: _keys(service.lookup_point(
                pg_session, actor=None, lon=lon, lat=lat)["parcels"])
            notes["service on PostgreSQL (PostGIS engine)"] = "the same service, auto engine"
        interleaved(points[:300], ways)  # warm-up: caches, prepared statements
        measured = interleaved(points, ways)
    for name, (secs, _) in measured.items():
        out["results"].append(Result(name, secs, notes[name]))
    svc_answers = measured["service: STRtree + row (SQLite)"][1]
    out["notes"].append(f"{sum(1 for a in svc_answers if a):,} of {len(points):,} points fall in a parcel")
    for name in ("PostGIS ST_Intersects + GiST (psycopg)", "service on PostgreSQL (PostGIS engine)"):
        if name in measured:
            differ = sum(1 for a, b in zip(measured[name][1], svc_answers, strict=True) if a != b)
            out["notes"].append(f"STRtree and {name.split(' (')[0]} differ on {differ} of {len(points)} points")

    if args.http:
        http = http_lookups({"HTTP: public lookup, STRtree (SQLite)": sqlite_settings,
                             **({"HTTP: public lookup, PostGIS (PostgreSQL)": pg_settings} if with_postgis else {})},
                            points[: args.http], work)
        http_notes = {"HTTP: public lookup, STRtree (SQLite)": "uvicorn, 1 worker, keep-alive, JSON with geometry",
                      "HTTP: public lookup, PostGIS (PostgreSQL)": "the same endpoint on a PostGIS deployment",
                      "HTTP baseline: GET /docs, no database": "the framework and middleware alone"}
        for name, (secs, answers) in http.items():
            out["results"].append(Result(name, secs, http_notes[name]))
            if name.startswith("HTTP: public lookup"):
                assert answers == svc_answers[: args.http], f"{name}: answers differ from the service"

    brute = geoms.copy()
    shapely.prepare(brute)
    keys = [(r["unit_code"], r["sheet_no"], r["parcel_no"]) for r in rows]
    brute_s, brute_answers = timed(points[: args.brute], lambda lon, lat: sorted(keys[i] for i in np.flatnonzero(
        shapely.intersects(brute, shapely.Point(lon, lat)))))
    out["results"].append(Result("brute force: shapely scan of all parcels", brute_s,
                                 f"{args.brute} points, prepared geometries"))
    differ = sum(1 for a, b in zip(brute_answers, svc_answers, strict=False) if a != b)
    out["notes"].append(f"STRtree and the brute-force scan differ on {differ} of {len(brute_answers)} points")

    out["load_end"] = os.getloadavg()[0]
    return out


def table(out: dict[str, Any]) -> Table:
    """The results as a rich table."""
    t = Table(title=f"Point lookup at {out['parcels']:,} parcels")
    for column in ("how", "p50 ms", "p99 ms", "lookups/s", "n", "note"):
        t.add_column(column, justify="left" if column in ("how", "note") else "right")
    for r in out["results"]:
        t.add_row(r.name, f"{r.p50:.3f}", f"{r.p99:.3f}", f"{r.rate:,.0f}", f"{len(r.seconds):,}", r.note)
    return t


def verdicts(out: dict[str, Any]) -> list[str]:
    """The issue's targets, checked against this run."""
    by_name = {r.name: r for r in out["results"]}
    svc = by_name["service: STRtree + row (SQLite)"]
    lines = [f"target service p99 <= 1 ms: {svc.p99:.3f} ms ({'met' if svc.p99 <= 1 else 'NOT met'})"]
    pg = by_name.get("PostGIS ST_Intersects + GiST (psycopg)")
    if pg:
        lines.append(f"target service throughput >= PostGIS: {svc.rate:,.0f} vs {pg.rate:,.0f} lookups/s "
                     f"({svc.rate / pg.rate:.1f}x, {'met' if svc.rate >= pg.rate else 'NOT met'})")
    tree_http, pg_http = by_name.get("HTTP: public lookup, STRtree (SQLite)"), by_name.get(
        "HTTP: public lookup, PostGIS (PostgreSQL)")
    if tree_http and pg_http:
        lines.append(f"the citizen endpoint: p50 {tree_http.p50:.2f} ms on the STRtree against {pg_http.p50:.2f} ms "
                     f"on PostGIS; most of either is the HTTP stack (see the /docs baseline)")
    return lines


def markdown(out: dict[str, Any], command: str) -> str:
    """The docs section."""
    lines = [
        START,
        "## Land: point lookup (\"what is at this point\")",
        "",
        f"`{command}` — {datetime.now(UTC):%Y-%m-%d}, {platform.machine()}, {os.cpu_count()} CPU threads "
        f"(shared), Python {platform.python_version()}, shapely {shapely.__version__} (GEOS "
        f"{'.'.join(map(str, shapely.geos_version))}), PostgreSQL 15 + PostGIS 3.3 on the same machine; "
        f"load average {out['load']:.2f} at the start and {out['load_end']:.2f} at the end (the machine is shared: "
        "with more runnable processes than cores, tails measure the scheduler more than the code).",
        "",
        f"{out['parcels']:,} parcels generated by the demo generator (Đà Lạt shapes) in {out['generate_s']:.1f} s; "
        f"the STRtree is built in {out['strtree_build_s']:.2f} s"
        + (f", the GiST index in {out['gist_build_s']:.2f} s (REINDEX)." if "gist_build_s" in out else "."),
        "Sequential lookups from one client, so lookups/s = 1 / mean latency; same query points for all rows "
        "(9 in 10 inside a random parcel).",
        "",
        "| how | p50 (ms) | p99 (ms) | lookups/s | lookups | note |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for r in out["results"]:
        lines.append(f"| {r.name} | {r.p50:.3f} | {r.p99:.3f} | {r.rate:,.0f} | {len(r.seconds):,} | {r.note} |")
    lines += ["", "| import | parcels | seconds | parcels/s |", "|---|---:|---:|---:|"]
    for name, count, seconds in out["imports"]:
        lines.append(f"| {name} | {count:,} | {seconds:.1f} | {count / seconds:,.0f} |")
    lines += ["", *[f"- {n}" for n in out["notes"]], *[f"- {v}" for v in verdicts(out)], END]
    return "\n".join(lines) + "\n"


def write_docs(section: str, path: Path) -> None:
    """Replace the land section of the benchmarks page (other sections stay as they are)."""
    replace_section(path, START, END, section)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print the table, update the docs."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parcels", type=int, default=100_000)
    parser.add_argument("--lookups", type=int, default=20_000, help="query points for service and PostGIS")
    parser.add_argument("--http", type=int, default=5_000, help="lookups over HTTP (0: skip)")
    parser.add_argument("--brute", type=int, default=300, help="lookups for the brute-force scan")
    parser.add_argument("--pg-url", default=PG_ADMIN, help="PostgreSQL admin URL (a database is created)")
    parser.add_argument("--pg-db", default=BENCH_DB, help="name of the database the benchmark creates and drops")
    parser.add_argument("--no-postgis", dest="postgis", action="store_false", help="skip PostGIS")
    parser.add_argument("--no-install", dest="install", action="store_false", help="never apt-get install PostGIS")
    parser.add_argument("--docs", type=Path, default=DOCS, help="the page to update")
    parser.add_argument("--no-docs", dest="write_docs", action="store_false")
    parser.add_argument("--workdir", default=None, help="keep files here instead of a temporary folder")
    args = parser.parse_args(argv)
    out = run(args)
    console.print(table(out))
    for name, count, seconds in out["imports"]:
        console.print(f"import {name}: {count:,} parcels in {seconds:.1f} s = {count / seconds:,.0f} parcels/s")
    for note in [*out["notes"], *verdicts(out)]:
        console.print(f"- {note}")
    if args.write_docs:
        write_docs(markdown(out, "python -m benchmarks.land_lookup " + " ".join(argv or sys.argv[1:])), args.docs)
        console.print(f"updated {args.docs}")
    return out


if __name__ == "__main__":
    main()
