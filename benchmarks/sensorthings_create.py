"""SensorThings CreateObservations (dataArray) against the REST batch door, side by side in one run.

    python -m benchmarks.sensorthings_create --rows 200000 --batch 10000 --things 500 --backend postgresql

Saola runs as `uvicorn saola.app:create_app` in its own process on a fresh database. `--things` Things, each with a
Location and one Datastream of the indicator bench.pm25, are made through the SensorThings door (deep insert).
Then one client sends the same kind of readings both ways, taking turns batch by batch so that both meet the same
load on a shared machine: *SensorThings*: POST /sta/v1.1/CreateObservations, one {Datastream, components,
dataArray} group per Datastream with rows [phenomenonTime, result] (OGC 18-088 dataArray extension), as a
national admin; *REST*: POST /api/ingest/observations with {"indicator", "entity", "ts", "value"} items for the
same Things, as a source system. Both end in the kernel's observations ingest, so the ratio is what each door adds
(parsing, checks, the answer: one self link per row for SensorThings). Each batch is a few minutes of every
Datastream; the two doors write different hours, so every reading is new. Time is measured at the client.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
from rich.console import Console
from rich.table import Table

from benchmarks.docs_section import replace_section
from benchmarks.rest_ingest import SECRET, machine, percentile, serve, wait_folded
from benchmarks.rest_ingest import fresh_database as pg_database

DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
START, END = "<!-- sensorthings:start -->", "<!-- sensorthings:end -->"
INDICATOR = "bench.pm25"
OM = "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_Measurement"


@contextmanager
def database(backend: str) -> Iterator[str]:
    """A fresh, empty database of the backend (SQLAlchemy URL), removed afterwards."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="saola-bench-sta-") as folder:
            yield f"sqlite:///{folder}/bench.db"
        return
    with pg_database() as url:
        yield url


def prepare(url: str) -> tuple[str, str]:
    """Migrate, load units, create the indicator, a source and a national admin; (API key, admin token)."""
    from saola.config import Settings
    from saola.core.auth.context import system_actor
    from saola.core.auth.service import create_user, issue_token
    from saola.core.indicators.schemas import IndicatorCreate
    from saola.core.indicators.service import create_indicator
    from saola.core.sources.service import create_source
    from saola.core.units.service import load_official_units
    from saola.db.engine import make_engine, make_session_factory, transaction
    from saola.db.migrate import upgrade

    upgrade(url)
    settings = Settings(database_url=url, data_dir=Path(tempfile.gettempdir()), secret_key=SECRET)
    engine = make_engine(settings)
    try:
        factory = make_session_factory(engine)
        system = system_actor("benchmark")
        with transaction(factory) as session:
            load_official_units(session)
        with transaction(factory) as session:
            create_indicator(session, actor=system, data=IndicatorCreate(
                code=INDICATOR, name_vi="Bụi mịn PM2.5", domain="bench", min_value=-1e9, max_value=1e9))
            _, key = create_source(session, actor=system, name=f"bench-sta-{uuid.uuid4().hex[:6]}", scope="VN",
                                   allowed_writes=["observations:bench.*"])
            user = create_user(session, actor=system, username="bench-sta-admin",
                               password="bench-password-0123", role="admin", scope="VN")
            token, _ = issue_token(settings, user)
        return key, token
    finally:
        engine.dispose()


def make_things(sta: httpx.Client, count: int, units: Sequence[str]) -> list[tuple[str, int]]:
    """Deep-insert `count` Things with one Datastream each; [(Thing id, Datastream id)]."""
    out: list[tuple[str, int]] = []
    prop: dict[str, Any] = {"name": "PM2.5", "definition": INDICATOR, "description": "fine particulate matter"}
    sensor: dict[str, Any] = {"name": "SDS011", "description": "laser", "encodingType": "application/pdf",
                              "metadata": "https://example.org/sds011.pdf"}
    for k in range(count):
        body = {
            "name": f"Trạm {k:05d}", "description": "Trạm quan trắc không khí",
            "properties": {"saola:unit_code": units[k % len(units)]},
            "Locations": [{"name": f"Vị trí {k:05d}", "description": "benchmark", "encodingType":
                           "application/geo+json", "location": {"type": "Point",
                                                                "coordinates": [108.4 + k * 1e-4, 11.9]}}],
            "Datastreams": [{"name": "PM2.5", "description": "Bụi mịn PM2.5", "observationType": OM,
                             "unitOfMeasurement": {"name": "microgram per cubic metre", "symbol": "µg/m³",
                                                   "definition": "ucum:ug/m3"},
                             "Sensor": sensor, "ObservedProperty": prop}],
        }
        r = sta.post("/Things", json=body)
        if r.status_code != 201:
            raise RuntimeError(f"creating a Thing failed: {r.status_code} {r.text[:500]}")
        thing = r.json()["@iot.id"]
        ds = sta.get(f"/Things('{thing}')/Datastreams", params={"$expand": "ObservedProperty,Sensor"}).json()
        first = ds["value"][0]
        out.append((str(thing), int(first["@iot.id"])))
        if "@iot.id" not in prop:  # the rest share the first one's property and sensor
            prop = {"@iot.id": first["ObservedProperty"]["@iot.id"]}
            sensor = {"@iot.id": first["Sensor"]["@iot.id"]}
    return out


def bodies(things: Sequence[tuple[str, int]], rows: int, batch: int, start: datetime,
           ) -> tuple[list[bytes], list[bytes]]:
    """The same shape of readings for both doors, in batches: (SensorThings bodies, REST bodies).

    Each batch holds `batch // len(things)` consecutive minutes of every Datastream; the REST door's readings lie
    a year after the SensorThings door's, so neither door meets the other's readings.
    """
    minutes = max(1, batch // len(things))
    sta_out, rest_out = [], []
    made, m0 = 0, 0
    rest_start = start + timedelta(days=365)
    while made < rows:
        stamps = [(start + timedelta(minutes=m)).isoformat() for m in range(m0, m0 + minutes)]
        rest_stamps = [(rest_start + timedelta(minutes=m)).isoformat() for m in range(m0, m0 + minutes)]
        groups, items = [], []
        for t, (thing, ds) in enumerate(things):
            groups.append({"Datastream": {"@iot.id": ds}, "components": ["phenomenonTime", "result"],
                           "dataArray": [[ts, float((t + i) % 97)] for i, ts in enumerate(stamps)]})
            items.extend({"indicator": INDICATOR, "entity": thing, "ts": ts, "value": float((t + i) % 97)}
                         for i, ts in enumerate(rest_stamps))
        sta_out.append(orjson.dumps(groups))
        rest_out.append(orjson.dumps({"items": items}))
        made += len(items)
        m0 += minutes
    return sta_out, rest_out


def run(rows: int = 200_000, batch: int = 10_000, things: int = 500, backend: str = "postgresql",
        progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Create the Things, then send both doors their batches in turns; returns the figures."""
    say = progress or (lambda _m: None)
    load_start = round(os.getloadavg()[0], 2)
    start = (datetime.now(UTC) - timedelta(days=400)).replace(minute=0, second=0, microsecond=0)
    with database(backend) as url, tempfile.TemporaryDirectory(prefix="saola-bench-sta-") as folder:
        say(f"{backend}: preparing a fresh database")
        key, token = prepare(url)
        process, base = serve(url, Path(folder) / "server.log")
        try:
            with httpx.Client(base_url=f"{base}/sta/v1.1", timeout=300,
                              headers={"Authorization": f"Bearer {token}"}) as sta, \
                    httpx.Client(base_url=f"{base}/api", timeout=300,
                                 headers={"X-API-Key": key, "Content-Type": "application/json"}) as rest:
                units = [u["code"] for u in rest.get("/units", params={"level": "commune", "limit": 1000},
                                                     headers={"Authorization": f"Bearer {token}"}).json()["items"]]
                say(f"creating {things:,} Things through the SensorThings door")
                made = make_things(sta, things, units or ["24781"])
                say(f"serialising {rows:,} readings for each door")
                sta_bodies, rest_bodies = bodies(made, rows, batch, start)
                # One warm-up batch each (imports, prepared statements, subjects), outside the measurement.
                warm_sta, warm_rest = bodies(made, len(made), len(made), start - timedelta(days=1))
                _post(sta, "/CreateObservations", warm_sta[0], 201)
                _post(rest, "/ingest/observations", warm_rest[0], 200)
                say(f"{len(sta_bodies)} batches each way, taking turns")
                sta_times, rest_times, sta_rows, rest_rows = [], [], 0, 0
                for sta_body, rest_body in zip(sta_bodies, rest_bodies, strict=True):
                    took, answer = _post(sta, "/CreateObservations", sta_body, 201)
                    sta_times.append(took)
                    sta_rows += len(answer)  # one self link per row
                    took, answer = _post(rest, "/ingest/observations", rest_body, 200)
                    rest_times.append(took)
                    rest_rows += answer["accepted"]
                drain = wait_folded(url) if backend == "postgresql" else 0.0
        finally:
            process.terminate()
            process.wait(30)
        stored = _stored(url)
    expected = sta_rows + rest_rows + 2 * len(made)
    assert stored == (expected, expected), (stored, expected)  # every reading stored and rolled up
    sta_rate, rest_rate = sta_rows / sum(sta_times), rest_rows / sum(rest_times)
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"), "machine": machine(), "load_start": load_start,
        "backend": backend, "things": len(made), "batch": batch, "batches": len(sta_times),
        "sta_rows": sta_rows, "rest_rows": rest_rows, "sta_per_s": sta_rate, "rest_per_s": rest_rate,
        "ratio": sta_rate / rest_rate, "drain_ms": drain * 1000,
        "sta_p50_ms": percentile(sta_times, 0.5) * 1000, "sta_p95_ms": percentile(sta_times, 0.95) * 1000,
        "rest_p50_ms": percentile(rest_times, 0.5) * 1000, "rest_p95_ms": percentile(rest_times, 0.95) * 1000,
    }


def _post(client: httpx.Client, path: str, body: bytes, status: int) -> tuple[float, Any]:
    started = time.perf_counter()
    r = client.post(path, content=body, headers={"Content-Type": "application/json"})
    took = time.perf_counter() - started
    if r.status_code != status:
        raise RuntimeError(f"POST {path} answered {r.status_code}: {r.text[:500]}")
    return took, r.json()


def _stored(url: str) -> tuple[int, int]:
    """Rows in observations and the sum of hourly rollup counts."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT count(*) FROM observations")).scalar_one()
            hourly = conn.execute(text("SELECT coalesce(sum(count), 0) FROM observation_rollups_hourly")).scalar_one()
        return int(rows), int(hourly)
    finally:
        engine.dispose()


# ---------------------------------------------------------------------------------------------------------------
# report


def table(report: dict[str, Any]) -> Table:
    """The figures as a rich table."""
    t = Table(title=f"CreateObservations vs REST ({report['backend']}), batches of {report['batch']:,}")
    for col in ("door", "rows", "rows/s", "p50 / p95 per batch"):
        t.add_column(col, justify="left" if col == "door" else "right")
    t.add_row("SensorThings", f"{report['sta_rows']:,}", f"{report['sta_per_s']:,.0f}",
              f"{report['sta_p50_ms']:.0f} / {report['sta_p95_ms']:.0f} ms")
    t.add_row("REST", f"{report['rest_rows']:,}", f"{report['rest_per_s']:,.0f}",
              f"{report['rest_p50_ms']:.0f} / {report['rest_p95_ms']:.0f} ms")
    t.add_row("ratio", "", f"{report['ratio']:.2f}", "")
    return t


def markdown(reports: Sequence[dict[str, Any]]) -> str:
    """This benchmark's section of docs/benchmarks.md, markers included."""
    first = reports[0]
    m = first["machine"]
    lines = [
        START,
        "## SensorThings CreateObservations (dataArray) against the REST door",
        "",
        f"Measured {first['date']} on {m['nproc']} CPUs ({m['cpu']}), {m['ram_gb']} GB RAM, Python {m['python']}; "
        "the machine is shared with other work, so the load average is given with each row (compare the ratio).",
        "",
        "Saola in its own process (uvicorn, 1 worker). Things, each with a Location and one Datastream of one "
        "indicator, are made through the SensorThings door (deep insert); then one client sends batches both ways, "
        "taking turns batch by batch: *SensorThings*: `POST /sta/v1.1/CreateObservations`, one "
        "`{Datastream, components: [phenomenonTime, result], dataArray}` group per Datastream, as a national admin, "
        "answered with one self link per row; *REST*: `POST /api/ingest/observations` with "
        "`{indicator, entity, ts, value}` items for the same Things, as a source system. Both end in the kernel's "
        "ingest (validation, scope, duplicates, insert, rollups, latest values, outbox and bus); every reading is "
        "new, and the run ends with all of them stored and rolled up. Time is measured at the client.",
        "",
        "| backend | Things | batch | SensorThings rows/s | REST rows/s | SensorThings / REST | SensorThings p50 / p95 "
        "| REST p50 / p95 | load average (start / end) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in reports:
        lines.append(
            f"| {r['backend']} | {r['things']:,} | {r['batch']:,} | {r['sta_per_s']:,.0f} | {r['rest_per_s']:,.0f} | "
            f"{r['ratio']:.2f} | {r['sta_p50_ms']:.0f} / {r['sta_p95_ms']:.0f} ms | {r['rest_p50_ms']:.0f} / "
            f"{r['rest_p95_ms']:.0f} ms | {r['load_start']} / {r['machine']['load']} |")
    lines += ["", "What SensorThings adds per row: the dataArray rows are checked one by one (time, result, "
                  "resultQuality) before the kernel sees them, and the answer names every new Observation.",
              "", f"Reproduce: `python -m benchmarks.sensorthings_create --rows {first['sta_rows']} "
                  f"--batch {first['batch']} --things {first['things']} --backend "
                  f"{','.join(r['backend'] for r in reports)}`", END]
    return "\n".join(lines)


def write_docs(reports: Sequence[dict[str, Any]], path: Path = DOCS) -> None:
    """Replace this benchmark's section of docs/benchmarks.md, leaving the others as they are."""
    replace_section(path, START, END, markdown(reports))


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: run, print, write docs/benchmarks.md."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000, help="readings sent through each door")
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--things", type=int, default=500)
    parser.add_argument("--backend", default="postgresql", help="postgresql, sqlite or both (comma-separated)")
    parser.add_argument("--no-docs", action="store_true", help="do not write docs/benchmarks.md")
    args = parser.parse_args(argv)
    console = Console()
    reports = []
    for backend in args.backend.split(","):
        report = run(args.rows, args.batch, args.things, backend, progress=lambda m: console.log(m))
        console.print(table(report))
        reports.append(report)
    if not args.no_docs:
        write_docs(reports)
        console.print(f"written to {DOCS}")


if __name__ == "__main__":
    main()
