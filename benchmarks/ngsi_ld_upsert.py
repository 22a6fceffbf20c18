"""NGSI-LD batch upsert over HTTP against the kernel's own upsert_entities on the same entities.

    python -m benchmarks.ngsi_ld_upsert --entities 50000 --batch 1000 --backends sqlite,postgresql

Each backend gets a fresh database (a temporary SQLite file; a new PostgreSQL database, dropped afterwards),
migrated and loaded with the unit tree. Then, on the same entities (stations spread over the communes of Lâm
Đồng, each with a temperature and a humidity observed now, a name, a relationship, a location and its unit):

  ngsi    POST /ngsi-ld/v1/entityOperations/upsert to a real uvicorn server (one worker, its own process) over
          keep-alive HTTP, application/json with the core context in a Link header: JSON parsing, @context
          expansion, NGSI-LD checks, type mapping, then the kernel's upsert_entities, one transaction per batch;
  kernel  saola.core.entities.service.upsert_entities called in process with EntityCreate models of the same
          entities (plain attribute values), one transaction per batch.

Both paths run twice: the first pass creates every entity, the second replaces them all (new values).
Orion-LD on one CPU does about 1,800 entity updates a second; the target here is at least 5,000.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select

from benchmarks.docs_section import replace_section
from benchmarks.scratch import percentile as _percentile
from benchmarks.scratch import scratch_database as _database
from saola.config import Settings
from saola.core.auth.context import system_actor
from saola.core.auth.service import create_user, issue_token
from saola.core.entities.models import Entity
from saola.core.entities.schemas import EntityCreate
from saola.core.entities.service import upsert_entities
from saola.core.units.models import Unit
from saola.core.units.service import load_official_units
from saola.db.engine import make_engine, make_session_factory, transaction
from saola.db.migrate import upgrade
from saola.packs.definitions import EntityTypeDefinition
from saola.packs.manager import Registry

DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
START, END = "<!-- ngsi:start -->", "<!-- ngsi:end -->"
CORE = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld"
LINK = f'<{CORE}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
PROVINCE = "68"
NGSI_TYPE = "BenchStation"
KERNEL_TYPE = "bench.station"
BASELINE_TYPE = "bench.baseline"
SECRET = "benchmark-secret-key-0123456789abcdef-ngsi"
TARGET = 5_000


def _summary(entities: int, latencies: list[float]) -> dict[str, float]:
    total = sum(latencies)
    return {"per_s": entities / total, "seconds": total, "p50_ms": _percentile(latencies, 0.5) * 1000,
            "p95_ms": _percentile(latencies, 0.95) * 1000}


def _communes(settings: Settings) -> tuple[list[str], str]:
    """Load the unit tree; returns the communes of Lâm Đồng and a bearer token of a province integrator."""
    engine = make_engine(settings)
    factory = make_session_factory(engine)
    try:
        with transaction(factory) as session:
            load_official_units(session)
        with transaction(factory) as session:
            communes = list(session.scalars(select(Unit.code).where(Unit.parent_code == PROVINCE)
                                            .order_by(Unit.code)))
            user = create_user(session, actor=system_actor("benchmark"), username="bench-ngsi",
                               password="bench-" + uuid.uuid4().hex, role="integrator", scope=PROVINCE)
            token = issue_token(settings, user)[0]
    finally:
        engine.dispose()
    return communes, token


def entities(count: int, communes: Sequence[str], round_no: int) -> list[dict[str, Any]]:
    """The NGSI-LD entities (normalized form, no @context: it travels in the Link header)."""
    observed = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    out = []
    for i in range(count):
        lon = 107.2 + (i % 400) * 0.003
        lat = 11.2 + (i // 400 % 400) * 0.003
        out.append({
            "id": f"urn:ngsi-ld:{NGSI_TYPE}:{i:07d}", "type": NGSI_TYPE,
            "name": {"type": "Property", "value": f"Trạm quan trắc {i}"},
            "temperature": {"type": "Property", "value": round(18 + (i * 7 + round_no) % 120 / 10, 1),
                            "unitCode": "CEL", "observedAt": observed},
            "humidity": {"type": "Property", "value": 60 + (i + round_no) % 40, "unitCode": "P1",
                         "observedAt": observed},
            "refDevice": {"type": "Relationship", "object": f"urn:ngsi-ld:Device:{i % 500:04d}"},
            "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}},
            "administrativeUnit": {"type": "Property", "value": communes[i % len(communes)]},
        })
    return out


def kernel_items(batch: Sequence[dict[str, Any]], kernel_type: str = KERNEL_TYPE) -> list[EntityCreate]:
    """The same entities as the kernel takes them: plain attribute values, the geometry and the unit."""
    items = []
    for e in batch:
        items.append(EntityCreate(
            type=kernel_type, name=e["name"]["value"], unit_code=e["administrativeUnit"]["value"],
            external_id=e["id"].replace(NGSI_TYPE, "Kernel"), geometry=e["location"]["value"],
            attributes={"temperature": e["temperature"]["value"], "humidity": e["humidity"]["value"],
                        "refDevice": e["refDevice"]["object"]}))
    return items


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _server(settings: Settings) -> Iterator[str]:
    """uvicorn serving the application in a process of its own; yields the base URL."""
    port = _free_port()
    env = {**os.environ, "SAOLA_DATABASE_URL": settings.url, "SAOLA_DATA_DIR": str(settings.data_dir),
           "SAOLA_SECRET_KEY": SECRET, "SAOLA_RUN_JOBS": "false", "SAOLA_LOG_LEVEL": "WARNING"}
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "saola.app:create_app", "--factory", "--host", "127.0.0.1", "--port",
         str(port), "--workers", "1", "--no-access-log", "--log-level", "warning"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{base}/ngsi-ld/v1/contexts/ngsi-ld-core-context.jsonld", timeout=1)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the server did not start: {process.stderr.read().decode()[-2000:]}"
                                       if process.stderr else "the server did not start") from None
                time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def _ngsi(base: str, token: str, items: list[dict[str, Any]], batch: int, expected: int) -> list[float]:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json", "Link": LINK}
    latencies: list[float] = []
    with httpx.Client(base_url=base, headers=headers, timeout=120) as client:
        for s in range(0, len(items), batch):
            body = orjson.dumps(items[s:s + batch])
            started = time.perf_counter()
            r = client.post("/ngsi-ld/v1/entityOperations/upsert", content=body)
            latencies.append(time.perf_counter() - started)
            if r.status_code != expected:
                raise RuntimeError(f"batch at {s}: HTTP {r.status_code} {r.text[:500]}")
    return latencies


def _baseline(settings: Settings, items: list[dict[str, Any]], batch: int) -> None:
    """Stations already on the node (another type, same shape), so both paths meet a table with data in it and
    current planner statistics, as on a live node, rather than a table growing from empty."""
    baseline = [{**e, "id": e["id"].replace(NGSI_TYPE, "Baseline")} for e in items]
    _kernel(settings, baseline, batch, kernel_type=BASELINE_TYPE)


def _kernel(settings: Settings, items: list[dict[str, Any]], batch: int, kernel_type: str = KERNEL_TYPE
            ) -> list[float]:
    engine = make_engine(settings)
    factory = make_session_factory(engine)
    registry = Registry(entity_types={kernel_type: EntityTypeDefinition(
        type=kernel_type, name_vi="Trạm thử", name_en="Bench station", domain="bench", geometry="Point")})
    actor = system_actor("benchmark")
    latencies: list[float] = []
    try:
        for s in range(0, len(items), batch):
            chunk = items[s:s + batch]
            started = time.perf_counter()
            models = kernel_items(chunk, kernel_type)  # what the kernel's own HTTP route gets from pydantic
            with transaction(factory) as session:
                upsert_entities(session, actor=actor, registry=registry, items=models)
            latencies.append(time.perf_counter() - started)
    finally:
        engine.dispose()
    return latencies


def _analyze(settings: Settings) -> None:
    """Bring PostgreSQL's planner statistics up to date before a pass, as autovacuum would on a live node.

    Without it a pass right after thousands of inserts is planned against an empty table, and whichever path runs
    first pays for it (a second a batch here) until autovacuum catches up.
    """
    if settings.is_sqlite:
        return
    engine = make_engine(settings)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")
            conn.commit()
    finally:
        engine.dispose()


def _stored(settings: Settings, kernel_type_prefix: str) -> int:
    engine = make_engine(settings)
    try:
        with make_session_factory(engine)() as session:
            return session.scalar(select(func.count()).select_from(Entity)
                                  .where(Entity.type.startswith(kernel_type_prefix))) or 0
    finally:
        engine.dispose()


def run_backend(backend: str, count: int, batch: int, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Measure one backend: both paths, creating then replacing, on the same entities in a fresh database."""
    say = progress or (lambda _m: None)
    with _database(backend) as url, tempfile.TemporaryDirectory(prefix="saola-bench-data-") as data:
        say(f"{backend}: migrating a fresh database")
        upgrade(url)
        settings = Settings(database_url=url, data_dir=Path(data), secret_key=SECRET, run_jobs=False)
        communes, token = _communes(settings)
        first, second = entities(count, communes, 0), entities(count, communes, 1)
        say(f"{backend}: {count:,} stations of another type already on the node")
        _baseline(settings, first, batch)
        gc.collect()
        gc.freeze()
        try:
            with _server(settings) as base:
                say(f"{backend}: NGSI-LD upsert of {count:,} new entities over HTTP")
                _analyze(settings)
                ngsi_create = _ngsi(base, token, first, batch, 201)
                say(f"{backend}: NGSI-LD upsert replacing them")
                _analyze(settings)
                ngsi_update = _ngsi(base, token, second, batch, 204)
            say(f"{backend}: kernel upsert_entities, the same entities")
            _analyze(settings)
            kernel_create = _kernel(settings, first, batch)
            _analyze(settings)
            kernel_update = _kernel(settings, second, batch)
            assert _stored(settings, "ngsi.") == count and _stored(settings, KERNEL_TYPE) == count
            assert _stored(settings, BASELINE_TYPE) == count
            engine = make_engine(settings)
            with engine.connect() as conn:
                version = conn.exec_driver_sql(
                    "SELECT sqlite_version()" if backend == "sqlite" else "SHOW server_version").scalar()
            engine.dispose()
        finally:
            gc.unfreeze()
    result: dict[str, Any] = {
        "backend": backend, "version": str(version).split()[0], "entities": count, "batch": batch,
        "ngsi_create": _summary(count, ngsi_create), "ngsi_update": _summary(count, ngsi_update),
        "kernel_create": _summary(count, kernel_create), "kernel_update": _summary(count, kernel_update),
    }
    result["ratio_create"] = result["ngsi_create"]["per_s"] / result["kernel_create"]["per_s"]
    result["ratio_update"] = result["ngsi_update"]["per_s"] / result["kernel_update"]["per_s"]
    return result


def run(count: int = 50_000, backends: Sequence[str] = ("sqlite", "postgresql"), batch: int = 1_000,
        progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the benchmark on each backend; returns the figures and the machine they were measured on."""
    return {"date": datetime.now(UTC).strftime("%Y-%m-%d"), "machine": machine(), "entities": count, "batch": batch,
            "results": [run_backend(b, count, batch, progress) for b in backends]}


def machine() -> dict[str, Any]:
    """CPU count, memory and CPU model of this machine."""
    mem_gb = 0.0
    cpu = platform.processor() or platform.machine()
    try:
        meminfo = Path("/proc/meminfo").read_text()
        mem_gb = int(re.search(r"MemTotal:\s+(\d+)", meminfo).group(1)) / 1024 / 1024  # type: ignore[union-attr]
        cpu = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text()).group(1).strip()  # type: ignore[union-attr]
    except (OSError, AttributeError):
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {"nproc": os.cpu_count(), "ram_gb": round(mem_gb, 1), "cpu": cpu, "python": platform.python_version(),
            "load": None if load is None else round(load, 2)}


def table(report: dict[str, Any]) -> Table:
    """The figures as a rich table."""
    t = Table(title=f"NGSI-LD batch upsert, {report['entities']:,} entities in batches of {report['batch']:,}")
    for col in ("backend", "pass", "NGSI-LD entities/s", "kernel entities/s", "NGSI-LD/kernel", "NGSI-LD p50 / p95 ms",
                "kernel p50 / p95 ms"):
        t.add_column(col, justify="right" if col not in ("backend", "pass") else "left")
    for r in report["results"]:
        for label, key in (("create", "create"), ("replace", "update")):
            n, k = r[f"ngsi_{key}"], r[f"kernel_{key}"]
            t.add_row(f"{r['backend']} {r['version']}", label, f"{n['per_s']:,.0f}", f"{k['per_s']:,.0f}",
                      f"{r[f'ratio_{key}']:.2f}", f"{n['p50_ms']:.0f} / {n['p95_ms']:.0f}",
                      f"{k['p50_ms']:.0f} / {k['p95_ms']:.0f}")
    return t


def markdown(report: dict[str, Any]) -> str:
    """The section of docs/benchmarks.md for this benchmark, markers included."""
    m = report["machine"]
    lines = [
        START,
        "## NGSI-LD batch upsert",
        "",
        f"Measured {report['date']} on {m['nproc']} CPUs ({m['cpu']}), {m['ram_gb']} GB RAM, Python {m['python']}, "
        f"load average {m['load']} at the start; {report['entities']:,} entities in batches of {report['batch']:,}, "
        "each pass once with new entities (create) and once over the same ids with new values (replace).",
        "",
        "*NGSI-LD*: `POST /ngsi-ld/v1/entityOperations/upsert` to uvicorn (one worker in its own process, the "
        "benchmark client in another) over keep-alive HTTP, `application/json` with the core context in a Link "
        "header; the door parses and checks every entity (attribute types, observedAt, URIs, GeoJSON), expands "
        "terms, maps the type, looks the ids up, then calls the kernel's `upsert_entities` (scope, allowed "
        "writes, geometry and bounding box, audit, outbox), one transaction per batch, and answers 201 or 204. "
        "Time is measured at the client, request and response included. *kernel*: "
        "`entities.service.upsert_entities` called in process with `EntityCreate` models of the same entities "
        "(plain attribute values), one transaction per batch. Each entity: name, temperature and humidity "
        "with unitCode and observedAt, a relationship, a Point location and its commune of Lâm Đồng. On "
        "PostgreSQL the planner statistics are refreshed (ANALYZE) before each pass of either path. The node "
        "already holds as many stations of another type, so both paths meet a table with data in it (on a "
        "table growing from empty, PostgreSQL keeps a prepared plan made when the table looked empty: see the "
        "notes below).",
        "",
        "| backend | pass | NGSI-LD entities/s | kernel entities/s | NGSI-LD / kernel | NGSI-LD p50 / p95 per batch "
        "| kernel p50 / p95 per batch |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in report["results"]:
        for label, key in (("create", "create"), ("replace", "update")):
            n, k = r[f"ngsi_{key}"], r[f"kernel_{key}"]
            lines.append(f"| {r['backend']} {r['version']} | {label} | {n['per_s']:,.0f} | {k['per_s']:,.0f} | "
                         f"{r[f'ratio_{key}']:.2f} | {n['p50_ms']:.0f} / {n['p95_ms']:.0f} ms | "
                         f"{k['p50_ms']:.0f} / {k['p95_ms']:.0f} ms |")
    slowest = min((r[f"ngsi_{key}"]["per_s"] for r in report["results"] for key in ("create", "update")),
                  default=0.0)
    extra = ", ".join(
        f"{r['backend']} {label} {r[f'ngsi_{key}']['p50_ms'] - r[f'kernel_{key}']['p50_ms']:.0f} ms"
        for r in report["results"] for label, key in (("create", "create"), ("replace", "update")))
    backends = ",".join(r["backend"] for r in report["results"])
    lines += [
        "",
        f"Target: at least {TARGET:,} entities a second (Orion-LD on one CPU does about 1,800 updates a second); "
        f"the slowest NGSI-LD figure above is {slowest:,.0f}.",
        "",
        "What changed. The kernel's `upsert_entities` no longer writes through the ORM's bulk INSERT and UPDATE by "
        "primary key, which went row by row through SQLAlchemy and, on PostgreSQL, as one pipelined statement per "
        "row through psycopg (about half of the server's time in a profile of the create pass). On PostgreSQL a "
        "batch is now one `INSERT ... SELECT` or one `UPDATE ... FROM` reading its rows from a single JSON "
        "parameter (`json_to_recordset`) that the engine's orjson serializer writes in one call; arrays per column "
        "(`unnest`) were tried first and came out about a quarter slower through the door, psycopg quoting every "
        "element of a text array in Python. On SQLite it is one executemany of a plain Core statement (the driver "
        "loops in C). Look-ups take their ids as one array (`= ANY(:ids)`) on PostgreSQL. Subjects (what "
        "observations hang on) are moved only for entities whose unit changed, found by their unique key; before, "
        "every replaced entity's subjects were updated, by a column without an index. Points skip the general "
        "GeoJSON walker, `core.text.fold` strips marks with a translate table (ASCII names skip it), and the "
        "NGSI-LD parser reads a Relationship to one URI, a GeoProperty Point and a text Property without its "
        "general path. Behaviour is unchanged: the same errors, all or nothing, scope, audit and outbox; a missing "
        "geometry is still stored as JSON null.",
        "",
        "Earlier figures, entities/s, create / replace. Before these changes, on the same machine the same day "
        "(load average 1.49): NGSI-LD sqlite 5,970 / 4,349, postgresql 3,612 / 3,419; kernel sqlite "
        "9,094 / 7,481, postgresql 4,735 / 4,140. The run published before that (another machine, AMD EPYC, load "
        "average 4.16): NGSI-LD "
        "sqlite 3,802 / 3,119, postgresql 2,125 / 1,922; kernel postgresql 3,279 / 2,584.",
        "",
        "The door writes through the kernel's `upsert_entities`, so the kernel column is its ceiling on this "
        f"machine; what the door adds per batch of {report['batch']:,} (difference of the medians: {extra}) is "
        "HTTP and JSON both ways, checking each attribute (types, URIs, observedAt, GeoJSON), term expansion, its "
        "own look-up of the ids across types (ids are unique in NGSI-LD, per type in the kernel) and the NGSI-LD "
        "members kept beside the values (a larger JSON document to write). The NGSI-LD path runs client, "
        "server and (on PostgreSQL) database as separate processes on two CPUs, the kernel path one process and the "
        "database, so its figures move more with whatever else runs on the machine. On PostgreSQL much of the kernel's "
        "remaining time is the server's: EXPLAIN ANALYZE of one batch's INSERT gave about 40 ms, 16 ms of it in "
        "the foreign key checks on units.",
        "",
        "Notes. Loading tens of thousands of entities into an *empty* table on PostgreSQL, the kernel's existence "
        "look-up in `upsert_entities` (then `type = $1 AND external_id IN (...)`) slowed down batch after batch "
        "(from 0.4 s to over 3 s per batch of 1,000): psycopg prepares a statement after five runs, PostgreSQL "
        "settled on a generic plan costed while the table looked empty, and that plan scanned the table until "
        "autovacuum analyzed it. Hence the stations already on the node above (kept so that figures compare with "
        "earlier runs). The engine connects with `plan_cache_mode=force_custom_plan`, so prepared statements are "
        "planned for the data each time and this trap is gone. The server freezes the objects built at startup out "
        "of the garbage collector (`gc.freeze()` in `saola.runtime.settle_garbage_collector`, worth about a third "
        "of this door's throughput when it was measured, before the changes above).",
        "",
        f"Reproduce: `python -m benchmarks.ngsi_ld_upsert --entities {report['entities']} --batch {report['batch']} "
        f"--backends {backends}`",
        END,
    ]
    return "\n".join(lines)


def write_docs(report: dict[str, Any], path: Path = DOCS) -> None:
    """Replace this benchmark's section of docs/benchmarks.md, leaving the other sections as they are."""
    replace_section(path, START, END, markdown(report))


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: run, print the table, write docs/benchmarks.md."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entities", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--no-docs", action="store_true", help="do not write docs/benchmarks.md")
    args = parser.parse_args(argv)
    console = Console()
    report = run(args.entities, [b for b in args.backends.split(",") if b], args.batch,
                 progress=lambda msg: console.log(msg))
    console.print(table(report))
    if not args.no_docs:
        write_docs(report)
        console.print(f"written to {DOCS}")


if __name__ == "__main__":
    main()
