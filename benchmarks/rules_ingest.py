"""Rules on the stream: what 1,000 active rules cost the ingest path, and how fast a crossing becomes an alert.

    python -m benchmarks.rules_ingest --backends sqlite,postgresql

Each run gets a fresh database (a temporary SQLite file; a new PostgreSQL database, dropped afterwards), migrated
and loaded with the unit tree, with the rules engine following the bus exactly as in the server. Subjects are 200
places of Lâm Đồng (68): its communes, then stations in them; four indicators are read once a minute.

  throughput  the same batches of readings are ingested through observations.service.ingest with no rule, then
              with 1,000 enabled threshold rules: 900 on indicators this stream never carries, 100 on the four it
              does (scoped to the province or to one commune; five of them cross now and then and write alerts).
              Runs alternate A B B A; the ratio compares the medians (target: at least 0.7).
  latency     with the same 1,000 rules plus one on a fifth indicator, readings arrive at a fixed rate (5,000/s
              by default, in batches of 250 every 50 ms, then of 500 every 100 ms) and every batch carries two
              readings that cross the threshold. Latency runs from the moment the batch was due (so falling
              behind counts) to the alerts.firing frame reaching an SSE client of /api/stream (the application
              under uvicorn in this process); target p99 at most 100 ms.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import random
import socket
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from benchmarks.docs_section import replace_section
from saola.bus import Message, get_bus
from saola.config import Settings
from saola.core.alerts.models import Alert
from saola.core.auth.context import system_actor
from saola.core.auth.service import create_user, issue_token
from saola.core.entities.models import Entity
from saola.core.indicators.schemas import IndicatorCreate
from saola.core.indicators.service import create_indicator
from saola.core.observations import service as observations
from saola.core.rules.engine import RulesEngine, get_engine, stop_engine
from saola.core.rules.schemas import RuleCreate
from saola.core.rules.service import create_rule
from saola.core.units.models import Unit
from saola.core.units.service import load_official_units
from saola.db.engine import make_engine, make_session_factory, transaction
from saola.db.migrate import upgrade

PG_ADMIN_URL = os.environ.get("SAOLA_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
START, END = "<!-- rules:start -->", "<!-- rules:end -->"
PROVINCE = "68"
SUBJECTS = 200
STREAM = {  # code: (typical value, spread)
    "bench.pm25": (35.0, 20.0),
    "bench.pm10": (60.0, 30.0),
    "bench.temp": (18.0, 5.0),
    "bench.humidity": (80.0, 10.0),
}
LEVEL = "bench.level"  # the latency stream's crossing indicator
OTHERS = 96  # indicators that rules watch but this stream never carries
T0 = datetime(2026, 6, 1, tzinfo=UTC)
console = Console()


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))] if ordered else float("nan")


@contextmanager
def _database(backend: str) -> Iterator[str]:
    """A fresh, empty database URL for the backend; removed afterwards."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="saola-bench-rules-") as folder:
            yield f"sqlite:///{folder}/bench.db"
        return
    name = f"saola_bench_rules_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1) + "/" + name
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def _prepared(backend: str, rules: int, firing_rules: int, *,
              engine_running: bool = True) -> Iterator[tuple[Engine, list[dict[str, Any]], RulesEngine | None]]:
    """A migrated database with units, indicators, 200 subjects and `rules` rules, and (unless asked not to) a
    rules engine following the bus."""
    with _database(backend) as url, tempfile.TemporaryDirectory(prefix="saola-bench-data-") as data:
        upgrade(url)
        settings = Settings(database_url=url, data_dir=Path(data), secret_key="b" * 40)
        engine = make_engine(settings)
        factory = make_session_factory(engine)
        system = system_actor("benchmark")
        with transaction(factory) as session:
            load_official_units(session)
        with transaction(factory) as session:
            for code in [*STREAM, LEVEL, *(f"bench.other_{k:02d}" for k in range(OTHERS))]:
                create_indicator(session, actor=system, data=IndicatorCreate(code=code, name_vi=code, domain="bench"))
            communes = list(session.scalars(select(Unit.code).where(Unit.parent_code == PROVINCE)
                                            .order_by(Unit.code)))
            subjects: list[dict[str, Any]] = [{"unit": c} for c in communes[:SUBJECTS]]
            for k in range(SUBJECTS - len(subjects)):
                station = Entity(type="station.air", name=f"Trạm {k}", unit_code=communes[k % len(communes)],
                                 external_id=f"bench-{k}")
                session.add(station)
                session.flush()
                subjects.append({"entity": str(station.id)})
        _make_rules(factory, rules, firing_rules, communes)
        rules_engine = RulesEngine(factory, settings).start() if engine_running else None
        try:
            yield engine, subjects, rules_engine
        finally:
            if rules_engine is not None:
                rules_engine.stop()
            stop_engine()  # the one a server's lifespan may have started
            engine.dispose()


def _make_rules(factory: sessionmaker[Session], count: int, firing: int, communes: list[str]) -> None:
    """`count` threshold rules: 90 % on indicators the stream never carries, the rest on its four; `firing` of
    those cross now and then."""
    rng = random.Random(1000)
    system = system_actor("benchmark")
    codes = list(STREAM)
    on_stream = count // 10
    with transaction(factory) as session:
        for k in range(count):
            scope = PROVINCE if rng.random() < 0.05 else rng.choice(communes)
            if k < on_stream:
                code = codes[k % len(codes)]
                typical, spread = STREAM[code]
                if k < firing:  # crossed by the rare spikes of the data
                    threshold, clear = typical + 2 * spread, typical + spread
                    scope = PROVINCE
                else:
                    threshold, clear = typical + 50 * spread, typical + 40 * spread
            else:
                code = f"bench.other_{rng.randrange(OTHERS):02d}"
                threshold, clear = 100.0, 90.0
            data = RuleCreate(name=f"Ngưỡng {k}", kind="threshold", unit_code=scope, severity="medium",
                              params={"indicator": code, "threshold": threshold, "clear_threshold": clear})
            create_rule(session, actor=system, data=data)


def _readings(subjects: list[dict[str, Any]], minutes: int) -> list[list[dict[str, Any]]]:
    """One batch per minute: every subject, every stream indicator; about one reading in 2,000 spikes."""
    rng = random.Random(68)
    batches = []
    for minute in range(minutes):
        ts = (T0 + timedelta(minutes=minute)).isoformat()
        batch = []
        for subject in subjects:
            for code, (typical, spread) in STREAM.items():
                value = typical + rng.uniform(-spread, spread)
                if rng.random() < 0.0005:
                    value = typical + 4 * spread
                batch.append({"indicator": code, **subject, "ts": ts, "value": round(value, 2)})
        batches.append(batch)
    return batches


def _ingest_all(engine: Engine, batches: list[list[dict[str, Any]]]) -> float:
    """Seconds spent ingesting every batch (each in its own transaction, the engine evaluating after commit)."""
    factory = make_session_factory(engine)
    system = system_actor("benchmark")
    spent = 0.0
    for batch in batches:
        started = time.perf_counter()
        with transaction(factory) as session:
            observations.ingest(session, actor=system, items=batch)
        spent += time.perf_counter() - started
    return spent


def _alerts(engine: Engine) -> int:
    with make_session_factory(engine)() as session:
        return session.scalar(select(func.count()).select_from(Alert)) or 0


def throughput(backend: str, *, minutes: int, rules: int, firing_rules: int, repeats: int) -> dict[str, Any]:
    """Rows per second with no rule and with `rules` rules, alternating runs on fresh databases."""
    rows = alerts = evaluations = 0
    rates: dict[int, list[float]] = {0: [], rules: []}
    order = [0, rules, rules, 0] * repeats
    for count in order[: 2 * repeats]:
        with _prepared(backend, count, firing_rules if count else 0) as (engine, subjects, rules_engine):
            batches = _readings(subjects, minutes)
            rows = sum(len(b) for b in batches)
            seconds = _ingest_all(engine, batches)
            rates[count].append(rows / seconds)
            if count and rules_engine is not None:
                alerts = _alerts(engine)
                evaluations = rules_engine.stats["evaluations"]
        console.print(f"  {backend}: {count:>5} rules  {rows / seconds:>10,.0f} rows/s")
    base, loaded = statistics.median(rates[0]), statistics.median(rates[rules])
    return {"backend": backend, "rows": rows, "rules": rules, "base": base, "loaded": loaded,
            "ratio": loaded / base, "alerts": alerts, "evaluations": evaluations}


class _StreamServer:
    """The application under uvicorn on 127.0.0.1 (in a thread), and an SSE client of /api/stream (in another)
    that notes when each alert of a rule arrives, by the data time the alert started at."""

    def __init__(self, settings: Settings, factory: sessionmaker[Session], rule_id: str) -> None:
        import uvicorn

        from saola.app import create_app

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.app = create_app(settings)
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="critical",
                                timeout_graceful_shutdown=1)  # the open stream is cut at the end, on purpose
        self.server = uvicorn.Server(config)
        self.rule_id = rule_id
        self.arrivals: dict[float, list[float]] = {}
        self.connected = threading.Event()
        with transaction(factory) as session:
            user = create_user(session, actor=system_actor("benchmark"), username=f"bench{uuid.uuid4().hex[:8]}",
                               password=uuid.uuid4().hex, role="operator", scope="VN")
        self.token, _ = issue_token(settings, user)

    def __enter__(self) -> _StreamServer:
        self.serving = threading.Thread(target=self.server.run, name="bench-uvicorn", daemon=True)
        self.serving.start()
        deadline = time.monotonic() + 30
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        self.following = threading.Thread(target=self._follow, name="bench-sse", daemon=True)
        self.following.start()
        if not self.connected.wait(30):
            raise RuntimeError("the stream did not connect")
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.serving.join(timeout=10)
        self.following.join(timeout=10)

    def _follow(self) -> None:
        url = f"http://127.0.0.1:{self.port}/api/stream?topics=alerts.firing"
        headers = {"Authorization": f"Bearer {self.token}"}
        try:
            with httpx.Client(timeout=None) as client, client.stream("GET", url, headers=headers) as response:
                for line in response.iter_lines():
                    if line.startswith("retry:"):
                        self.connected.set()
                    elif line.startswith("data: "):
                        arrived = time.perf_counter()
                        data = orjson.loads(line[6:])
                        if data.get("rule_id") == self.rule_id:
                            started = datetime.fromisoformat(data["started_at"]).timestamp()
                            self.arrivals.setdefault(started, []).append(arrived)
        except httpx.HTTPError:  # the server closing the stream at the end of the run
            return


def latency(backend: str, *, rules: int, firing_rules: int, rate: int, batch: int, seconds: float) -> dict[str, Any]:
    """Latency from a crossing reading's due time to its alert on /api/stream (and on the bus), at a fixed rate."""
    with _prepared(backend, rules, firing_rules, engine_running=False) as (engine, subjects, _none):
        factory = make_session_factory(engine)
        system = system_actor("benchmark")
        with transaction(factory) as session:
            rule = create_rule(session, actor=system, data=RuleCreate(
                name="Mực nước vượt báo động", kind="threshold", unit_code=PROVINCE, severity="high", flap_limit=0,
                params={"indicator": LEVEL, "threshold": 100.0, "clear_threshold": 50.0}))
            rule_id = str(rule.id)
        settings = Settings(database_url=str(engine.url.render_as_string(hide_password=False)),
                            data_dir=Path(tempfile.gettempdir()), secret_key="b" * 40, run_jobs=False)
        due_by_ts: dict[float, float] = {}
        on_bus: list[float] = []
        current = [0.0]

        def heard(message: Message) -> None:
            if message.data.get("rule_id") == rule_id:
                on_bus.append(time.perf_counter() - current[0])

        per_subject = len(STREAM) + 1
        size = max(1, batch // per_subject)
        interval = batch / rate
        total = max(1, int(seconds / interval))
        rng = random.Random(5)
        ingest_times: list[float] = []
        with _StreamServer(settings, factory, rule_id) as server:  # its lifespan starts the rules engine
            unsubscribe = get_bus().subscribe("alerts.firing", heard)
            start = time.perf_counter()
            try:
                for k in range(total):
                    chosen = [subjects[(k * size + i) % len(subjects)] for i in range(size)]
                    moment = T0 + timedelta(seconds=k)
                    ts = moment.isoformat()
                    items = []
                    for i, subject in enumerate(chosen):
                        for code, (typical, spread) in STREAM.items():
                            items.append({"indicator": code, **subject, "ts": ts,
                                          "value": round(typical + rng.uniform(-spread, spread), 2)})
                        crossing = i in ((2 * k) % size, (2 * k + 1) % size)  # two per batch, a new pair each time
                        items.append({"indicator": LEVEL, **subject, "ts": ts, "value": 150.0 if crossing else 20.0})
                    current[0] = due_by_ts[moment.timestamp()] = start + k * interval
                    wait = current[0] - time.perf_counter()
                    if wait > 0:
                        time.sleep(wait)
                    began = time.perf_counter()
                    with transaction(factory) as session:
                        observations.ingest(session, actor=system, items=items)
                    ingest_times.append(time.perf_counter() - began)
                elapsed = time.perf_counter() - start
                deadline = time.monotonic() + 5  # let the last frames arrive
                while sum(map(len, server.arrivals.values())) < len(on_bus) and time.monotonic() < deadline:
                    time.sleep(0.02)
            finally:
                unsubscribe()
            samples = [arrived - due_by_ts[started] for started, times in server.arrivals.items() for arrived in times
                       if started in due_by_ts]
            running = get_engine()
            rules_times = list(running.durations) if running is not None else []
        sent = total * size * per_subject
    result = {"backend": backend, "rate": rate, "batch": batch, "achieved": sent / elapsed, "crossings": len(samples),
              "p50_ms": _percentile(samples, 0.5) * 1000, "p99_ms": _percentile(samples, 0.99) * 1000,
              "max_ms": max(samples, default=float("nan")) * 1000, "bus_p99_ms": _percentile(on_bus, 0.99) * 1000,
              "bus_crossings": len(on_bus), "ingest_p50_ms": _percentile(ingest_times, 0.5) * 1000,
              "rules_p50_ms": _percentile(rules_times, 0.5) * 1000,
              "rules_p99_ms": _percentile(rules_times, 0.99) * 1000}
    console.print(f"  {backend}: {result['achieved']:,.0f} obs/s, {len(samples)} crossings on /api/stream, "
                  f"p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms (bus p99 {result['bus_p99_ms']:.1f})")
    return result


def _markdown(through: list[dict[str, Any]], lat: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [
        START,
        "## Rules on the stream (`python -m benchmarks.rules_ingest`)",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {platform.machine()}, {os.cpu_count()} CPU, "
        f"Python {platform.python_version()}, load average {args.load:.1f} when it started (the machine is shared "
        "with other work: compare ratios, not absolute rates); the rules engine runs in the ingesting process, "
        "right after each batch commits, and writes alerts in its own transaction.",
        "",
        f"Ingest throughput, {args.rules:,} enabled threshold rules against none (batches of one minute of 200 "
        f"subjects x 4 indicators, {args.minutes} minutes; {args.rules // 10} rules on the streamed indicators, "
        f"{args.firing} of which fire now and then; median of {args.repeats} run(s) each):",
        "",
        "| backend | rows | no rules (rows/s) | with rules (rows/s) | ratio (target >= 0.7) | rule evaluations "
        "| alerts written |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [f"| {r['backend']} | {r['rows']:,} | {r['base']:,.0f} | {r['loaded']:,.0f} | **{r['ratio']:.2f}** | "
              f"{r['evaluations']:,} | {r['alerts']} |" for r in through]
    lines += [
        "",
        f"Latency from a reading crossing a threshold to its alert, at {args.rate:,} observations/s for "
        f"{args.seconds:g} s with the same {args.rules:,} rules active, two crossings in every batch. Timed from "
        "the moment the batch was due (so falling behind would count) to the arrival of its `alerts.firing` "
        "frame at an SSE client of `GET /api/stream` served by uvicorn on 127.0.0.1 (same machine); the bus "
        "column is the same measured at the bus. The rules run after the batch commits, so a batch's own ingest "
        "time is most of it; the rules' own share (evaluating the batch and writing its alert changes) is the "
        "last column:",
        "",
        "| backend | batch (every) | achieved obs/s | alerts on the stream | p50 ms | p99 ms (target <= 100) "
        "| max ms | bus p99 ms | ingest p50 ms/batch | rules p50 / p99 ms/batch |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [f"| {r['backend']} | {r['batch']} ({1000 * r['batch'] / r['rate']:.0f} ms) | {r['achieved']:,.0f} | "
              f"{r['crossings']} | {r['p50_ms']:.1f} | **{r['p99_ms']:.1f}** | {r['max_ms']:.1f} | "
              f"{r['bus_p99_ms']:.1f} | {r['ingest_p50_ms']:.1f} | {r['rules_p50_ms']:.1f} / "
              f"{r['rules_p99_ms']:.1f} |" for r in lat]
    behind = [r for r in lat if r["achieved"] < 0.95 * r["rate"]]
    if behind:
        lines += ["", "Where the achieved rate is below the asked one, this machine could not ingest that many "
                  "readings a second at the time (compare the rule-free rate above): batches queued up and the "
                  "latency is mostly that queue, not the rules."]
    lines.append(END)
    return "\n".join(lines)


def write_docs(section: str, path: Path = DOCS) -> None:
    """Replace this benchmark's section of docs/benchmarks.md (other sections are left as they are)."""
    replace_section(path, START, END, section)


def run(args: argparse.Namespace) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Both measurements on every backend asked for."""
    through, lat = [], []
    for backend in [b for b in args.backends.split(",") if b]:
        console.print(f"[bold]{backend}[/bold]: throughput")
        through.append(throughput(backend, minutes=args.minutes, rules=args.rules, firing_rules=args.firing,
                                  repeats=args.repeats))
        for batch in [int(b) for b in args.batches.split(",") if b]:
            console.print(f"[bold]{backend}[/bold]: latency, batches of {batch}")
            # In a fresh process: the server's lifespan starts subscribers (the rules engine, the stream hub,
            # other doors) that would outlive its temporary database and weigh on the next runs.
            with multiprocessing.get_context("spawn").Pool(1) as pool:
                lat.append(pool.apply(latency, (backend,), {"rules": args.rules, "firing_rules": args.firing,
                                                            "rate": args.rate, "batch": batch,
                                                            "seconds": args.seconds}))
    return through, lat


def parser() -> argparse.ArgumentParser:
    """The command line of the benchmark."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backends", default="sqlite,postgresql")
    p.add_argument("--minutes", type=int, default=60, help="minutes of readings in the throughput runs")
    p.add_argument("--rules", type=int, default=1000)
    p.add_argument("--firing", type=int, default=5, help="rules among them that fire now and then")
    p.add_argument("--repeats", type=int, default=2, help="runs of each kind (alternating)")
    p.add_argument("--rate", type=int, default=5000, help="observations per second in the latency run")
    p.add_argument("--batches", default="250,500", help="readings per batch in the latency runs (comma-separated)")
    p.add_argument("--seconds", type=float, default=20.0, help="length of the latency run")
    p.add_argument("--no-docs", action="store_true", help="do not update docs/benchmarks.md")
    return p


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark, print the tables and update docs/benchmarks.md."""
    args = parser().parse_args(argv)
    args.load = os.getloadavg()[0]
    through, lat = run(args)
    table = Table(title=f"{args.rules:,} rules on the stream")
    for column in ("backend / batch", "ratio", "p50 ms", "p99 ms", "achieved obs/s"):
        table.add_column(column)
    ratios = {t["backend"]: t["ratio"] for t in through}
    for r in lat:
        table.add_row(f"{r['backend']} / {r['batch']}", f"{ratios[r['backend']]:.2f}", f"{r['p50_ms']:.1f}",
                      f"{r['p99_ms']:.1f}", f"{r['achieved']:,.0f}")
    console.print(table)
    if not args.no_docs:
        write_docs(_markdown(through, lat, args))
        console.print(f"updated {DOCS}")


if __name__ == "__main__":
    main()
