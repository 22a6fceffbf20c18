"""Rules on the stream: what 1,000 active rules cost the ingest path.

    python -m benchmarks.rules_ingest --backends sqlite,postgresql

Each run gets a fresh database (a temporary SQLite file; a new PostgreSQL database, dropped afterwards), migrated
and loaded with the unit tree, with the rules engine following the bus exactly as in the server. Subjects are 200
places of Lâm Đồng (68): its communes, then stations in them; four indicators are read once a minute.

  throughput  the same batches of readings are ingested through observations.service.ingest with no rule, then
              with 1,000 enabled threshold rules: 900 on indicators this stream never carries, 100 on the four it
              does (scoped to the province or to one commune; five of them cross now and then and write alerts).
              Runs alternate A B B A; the ratio compares the medians (target: at least 0.7). The clock stops
              when the rules engine has evaluated the last batch and written its alerts (on PostgreSQL it works
              on its own thread, so the writer does not wait for it batch by batch).

How fast a crossing becomes an alert on the live stream is benchmarks.alert_latency (it builds on this module's
database and rules).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from benchmarks.docs_section import replace_section
from benchmarks.scratch import scratch_database as _database
from saola.config import Settings
from saola.core.alerts.models import Alert
from saola.core.auth.context import system_actor
from saola.core.entities.models import Entity
from saola.core.indicators.schemas import IndicatorCreate
from saola.core.indicators.service import create_indicator
from saola.core.observations import service as observations
from saola.core.rules.engine import RulesEngine, stop_engine
from saola.core.rules.schemas import RuleCreate
from saola.core.rules.service import create_rule
from saola.core.units.models import Unit
from saola.core.units.service import load_official_units
from saola.db.engine import make_engine, make_session_factory, transaction
from saola.db.migrate import upgrade

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


def _ingest_all(engine: Engine, batches: list[list[dict[str, Any]]], rules_engine: RulesEngine | None = None) -> float:
    """Seconds spent ingesting every batch (each in its own transaction, the engine evaluating after commit), until
    the rules engine has caught up."""
    factory = make_session_factory(engine)
    system = system_actor("benchmark")
    spent = 0.0
    for batch in batches:
        started = time.perf_counter()
        with transaction(factory) as session:
            observations.ingest(session, actor=system, items=batch)
        spent += time.perf_counter() - started
    if rules_engine is not None:
        started = time.perf_counter()
        rules_engine.wait(None)
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
            seconds = _ingest_all(engine, batches, rules_engine)
            rates[count].append(rows / seconds)
            if count and rules_engine is not None:
                alerts = _alerts(engine)
                evaluations = rules_engine.stats["evaluations"]
        console.print(f"  {backend}: {count:>5} rules  {rows / seconds:>10,.0f} rows/s")
    base, loaded = statistics.median(rates[0]), statistics.median(rates[rules])
    return {"backend": backend, "rows": rows, "rules": rules, "base": base, "loaded": loaded,
            "ratio": loaded / base, "alerts": alerts, "evaluations": evaluations}


def _markdown(through: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [
        START,
        "## Rules on the stream (`python -m benchmarks.rules_ingest`)",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {platform.machine()}, {os.cpu_count()} CPU, "
        f"Python {platform.python_version()}, load average {args.load:.1f} when it started (the machine is shared "
        "with other work: compare ratios, not absolute rates); the rules engine runs in the ingesting process: "
        "on PostgreSQL on its own thread, fed the batches as they commit, writing alerts in its own transactions "
        "(several batches' worth at once when it falls behind); on SQLite in the writer's thread right after each "
        "commit. Each run's clock stops when the engine has caught up.",
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
    lines += ["", "The runs of a shared machine vary by tens of percent: a ratio above 1 is that noise. Latency from a "
              "crossing to its alert on the live stream: see the alert-latency section.", "",
              f"Reproduce: `python -m benchmarks.rules_ingest --backends {args.backends} --minutes {args.minutes} "
              f"--repeats {args.repeats}`"]
    lines.append(END)
    return "\n".join(lines)


def write_docs(section: str, path: Path = DOCS) -> None:
    """Replace this benchmark's section of docs/benchmarks.md (other sections are left as they are)."""
    replace_section(path, START, END, section)


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The throughput measurement on every backend asked for."""
    through = []
    for backend in [b for b in args.backends.split(",") if b]:
        console.print(f"[bold]{backend}[/bold]: throughput")
        through.append(throughput(backend, minutes=args.minutes, rules=args.rules, firing_rules=args.firing,
                                  repeats=args.repeats))
    return through


def parser() -> argparse.ArgumentParser:
    """The command line of the benchmark."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backends", default="sqlite,postgresql")
    p.add_argument("--minutes", type=int, default=60, help="minutes of readings in the throughput runs")
    p.add_argument("--rules", type=int, default=1000)
    p.add_argument("--firing", type=int, default=5, help="rules among them that fire now and then")
    p.add_argument("--repeats", type=int, default=2, help="runs of each kind (alternating)")
    p.add_argument("--no-docs", action="store_true", help="do not update docs/benchmarks.md")
    return p


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark, print the tables and update docs/benchmarks.md."""
    args = parser().parse_args(argv)
    args.load = os.getloadavg()[0]
    through = run(args)
    table = Table(title=f"{args.rules:,} rules on the stream: ingest throughput")
    for column in ("backend", "no rules rows/s", "with rules rows/s", "ratio (>= 0.7)"):
        table.add_column(column)
    for t in through:
        table.add_row(t["backend"], f"{t['base']:,.0f}", f"{t['loaded']:,.0f}", f"{t['ratio']:.2f}")
    console.print(table)
    if not args.no_docs:
        write_docs(_markdown(through, args))
        console.print(f"updated {DOCS}")


if __name__ == "__main__":
    main()
