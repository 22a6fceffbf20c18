"""Citizen reports: what the pack's checks cost on top of the kernel's case, and the public map and statistics.

    python -m benchmarks.citizen_reports --existing 5000 --submissions 300 --backends sqlite,postgresql

Same run, same machine, same database, side by side:
- submit: the pack's whole path (fields, category, per-IP and per-contact limits, duplicate lookup, routing,
  kernel case with timeline, audit and outbox, details and submission rows), one transaction per report;
- open_case: the kernel's case service alone with the same title and unit (what a report costs without the pack);
- plain INSERT: one row into cases with SQLAlchemy Core (no checks, no timeline, no audit): the floor;
- map: the anonymised GeoJSON of every report (service.map_features) against a plain SELECT of the same columns;
- statistics: counts by category, status, commune, agency on-time rates and satisfaction.
Reports are generated at benchmark time at random places in Lâm Đồng. Results go to the `citizen_reports`
section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from sqlalchemy import insert, select

from benchmarks.docs_section import replace_section
from saola.config import Settings
from saola.core.auth.context import system_actor
from saola.core.cases.models import Case
from saola.core.cases.service import open_case
from saola.core.units.models import Unit
from saola.core.units.service import ensure_agency, load_official_units
from saola.db.engine import make_engine, make_session_factory, transaction
from saola.db.types import utcnow
from saola.domains.citizen_reports import service
from saola.domains.citizen_reports.categories import DEFAULT_CATEGORIES
from saola.domains.citizen_reports.models import ReportDetail

DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
START, END = "<!-- citizen_reports:start -->", "<!-- citizen_reports:end -->"
PG_ADMIN = os.environ.get("SAOLA_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
SECRET = "benchmark-secret-key-that-is-long-enough-0123456789"
WARDS = ("24781", "24787", "24778", "24805", "24846")


def _ms(values: list[float], q: float) -> float:
    return float(np.percentile(values, q) * 1000) if values else float("nan")


def _settings(backend: str, folder: Path, db: str) -> Settings:
    # Limits are raised: the benchmark measures the checks, not their refusals.
    common: dict[str, Any] = {"data_dir": folder, "secret_key": SECRET, "run_jobs": False,
                              "citizen_reports_per_ip_per_hour": 10**9, "citizen_reports_per_contact_per_day": 10**9}
    if backend == "postgresql":
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{db}"')
        base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
        return Settings(database_url=f"{base}/{db}", **common)
    return Settings(**common)


def _drop(backend: str, db: str) -> None:
    if backend == "postgresql":
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def _submission(rng: random.Random) -> service.Submission:
    code = rng.choice(DEFAULT_CATEGORIES)[0]
    return service.Submission(description="Phản ánh thử nghiệm hiệu năng", category=code,
                              lon=round(108.0 + rng.random() * 0.9, 6), lat=round(11.5 + rng.random() * 0.6, 6),
                              address="Đường thử nghiệm", unit_code=rng.choice(WARDS),
                              contact_phone=f"09{rng.randint(10_000_000, 99_999_999)}")


def _each(factory: Any, fn: Callable[[Any, int], Any], n: int) -> list[float]:
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        with transaction(factory) as session:
            fn(session, i)
        out.append(time.perf_counter() - t0)
    return out


def _reads(factory: Any, fn: Callable[[Any], Any], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        with factory() as session:
            fn(session)
        out.append(time.perf_counter() - t0)
    return out


def run_backend(backend: str, *, existing: int, submissions: int, reads: int, workdir: Path,
                db: str) -> dict[str, Any]:
    """Seed `existing` reports, then time the paths side by side on one backend."""
    from saola.cli import upgrade_database

    folder = workdir / backend
    folder.mkdir(parents=True, exist_ok=True)
    settings = _settings(backend, folder, db)
    upgrade_database(settings)
    engine = make_engine(settings)
    factory = make_session_factory(engine)
    rng = random.Random(1022)
    with transaction(factory) as session:
        load_official_units(session)
        ensure_agency(session, unit_code="68", code="so-xd", name="Sở Xây dựng")
        for ward in WARDS:
            ensure_agency(session, unit_code=ward, code="ubnd", name=f"UBND {ward}", kind="people_committee")
    t0 = time.perf_counter()
    for start in range(0, existing, 200):
        with transaction(factory) as session:
            for _ in range(min(200, existing - start)):
                service.submit(session, settings=settings, data=_submission(rng), channel="api",
                               remote_ip=f"10.0.{rng.randint(0, 255)}.{rng.randint(0, 255)}")
    seed_seconds = time.perf_counter() - t0

    actor = system_actor("benchmark")
    with factory() as session:
        path = session.scalar(select(Unit.path).where(Unit.code == WARDS[0]))

    def full(session: Any, i: int) -> None:
        service.submit(session, settings=settings, data=_submission(rng), channel="api", remote_ip=f"10.1.0.{i % 250}")

    def kernel(session: Any, _i: int) -> None:
        open_case(session, actor=actor, case_type="citizen_report", title="Chiếu sáng: đèn hỏng", unit_code=WARDS[0],
                  description="Phản ánh thử nghiệm hiệu năng", category="lighting")

    def plain(session: Any, i: int) -> None:
        now = utcnow()
        session.execute(insert(Case).values(
            id=uuid.uuid4(), origin_node="bench", code=f"BX-{i}-{uuid.uuid4().hex[:8]}", case_type="citizen_report",
            category="lighting", title="Chiếu sáng: đèn hỏng", description="", status="received", priority="normal",
            unit_code=WARDS[0], unit_path=path, is_open=True, data={}, search_text="", created_at=now,
            updated_at=now, first_response_breached=False, escalation_level=0, progress_percent=0,
            created_by="bench"))

    results: list[tuple[str, list[float]]] = [
        ("submit: the pack's whole path", _each(factory, full, submissions)),
        ("open_case: the kernel's case alone", _each(factory, kernel, submissions)),
        ("plain INSERT into cases", _each(factory, plain, submissions)),
    ]
    total = existing + submissions

    def plain_map(session: Any) -> None:
        session.execute(select(Case.code, Case.status, Case.created_at, ReportDetail.category, ReportDetail.lon,
                               ReportDetail.lat).join(ReportDetail, ReportDetail.case_id == Case.id)
                        .where(Case.status != "rejected").order_by(Case.created_at.desc()).limit(10_000)).all()

    map_runs = _reads(factory, lambda s: service.map_features(s, settings=settings, limit=10_000), reads)
    results += [("map: map_features (GeoJSON dict)", map_runs),
                ("map baseline: plain SELECT of the same columns", _reads(factory, plain_map, reads)),
                ("statistics: service.statistics", _reads(factory, lambda s: service.statistics(s), reads))]
    with factory() as session:
        features = len(service.map_features(session, settings=settings, limit=10_000)["features"])
    engine.dispose()
    _drop(backend, db)
    return {"backend": backend, "results": results, "seed_seconds": seed_seconds, "existing": existing,
            "total": total, "features": features}


def render(runs: list[dict[str, Any]], args: argparse.Namespace) -> str:
    """The docs section."""
    lines = [START, "## Citizen reports", "",
             f"`python -m benchmarks.citizen_reports --existing {args.existing} --submissions {args.submissions} "
             f"--backends {args.backends}` on {platform.machine()} ({os.cpu_count()} cores), "
             f"{time.strftime('%Y-%m-%d')}. Each submission is its own transaction, over {args.existing} reports "
             "already stored; ratios are against the kernel's `open_case` (submission) or the plain SELECT (map).",
             "", "| backend | how | p50 ms | p95 ms | ratio (p50) |", "|---|---|---|---|---|"]
    for run in runs:
        by = {name: values for name, values in run["results"]}
        kernel = _ms(by["open_case: the kernel's case alone"], 50)
        plain_map = _ms(by["map baseline: plain SELECT of the same columns"], 50)
        for name, values in run["results"]:
            base = plain_map if name.startswith("map") else kernel if not name.startswith("statistics") else None
            ratio = f"{_ms(values, 50) / base:.2f}" if base else "—"
            lines.append(f"| {run['backend']} | {name} | {_ms(values, 50):.2f} | {_ms(values, 95):.2f} | {ratio} |")
        lines.append(f"| {run['backend']} | seeding {run['existing']} reports through submit, in batches of 200 | "
                     f"{1000 * run['seed_seconds'] / max(run['existing'], 1):.2f} per report | | |")
    lines += ["", "The pack's path adds the checks (category, limits, duplicates within 50 m, routing) and two rows "
              "(details, submission) to the kernel's case; the map answers with every report as GeoJSON "
              f"({runs[0]['features'] if runs else 0} features on the first backend).", END]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark and write its docs section; returns the figures (for the smoke test)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--existing", type=int, default=5000)
    parser.add_argument("--submissions", type=int, default=300)
    parser.add_argument("--reads", type=int, default=20)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--docs", type=Path, default=DOCS)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--pg-db", default="saola_bench_citizen_reports")
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="saola-bench-cr-"))
    try:
        runs = [run_backend(b, existing=args.existing, submissions=args.submissions, reads=args.reads,
                            workdir=workdir, db=args.pg_db) for b in args.backends.split(",") if b]
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    section = render(runs, args)
    replace_section(args.docs, START, END, section)
    print(section)
    return {"runs": runs, "section": section}


if __name__ == "__main__":
    main()
