"""REST batch ingest into PostgreSQL, sustained, against raw COPY of the same rows, in the same run.

    python -m benchmarks.rest_ingest --seconds 25 --batch 10000 --clients 2

A fresh PostgreSQL database is migrated and loaded with the unit tree; one indicator per reading kind and one source
are created. Saola runs as `uvicorn saola.app:create_app` in its own process (1 worker, httptools, uvloop), and
`--clients` threads of this process POST pre-serialised JSON batches to POST /api/ingest/observations with
keep-alive httpx clients for `--seconds` seconds: validation, scope, duplicate detection, the insert, hourly and daily
rollups, latest values and the outbox and bus, one transaction per batch, as for any source. Then the same rows,
resolved to integer keys, are COPYed (psycopg, binary) into a copy of the observations table by the same number of
connections, one transaction per batch: the plainest way to put those rows into PostgreSQL. Machine CPU use is read
from /proc/stat during each phase.

Readings: `--subjects` communes by 4 indicators, one reading a minute each, so a batch of 10,000 covers about
2.5 minutes of the whole network.
"""

from __future__ import annotations

import argparse
import gc
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
from rich.console import Console
from rich.table import Table

from benchmarks.docs_section import replace_section
from benchmarks.scratch import scratch_database

DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
START, END = "<!-- rest:start -->", "<!-- rest:end -->"
SECRET = "benchmark-secret-key-0123456789abcdef-rest"
INDICATORS = ("bench.pm25", "bench.pm10", "bench.no2", "bench.temp")
ANCHOR = "ThingsBoard on a 2-vCPU node: about 15,000 points/s at 95% CPU"


# ---------------------------------------------------------------------------------------------------------------
# machine


def cpu_times() -> tuple[float, float, float]:
    """(busy, total, steal) jiffies of the whole machine since boot; steal is CPU time the hypervisor gave to other
    guests (counted in busy)."""
    fields = [float(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
    return sum(fields) - idle, sum(fields), (fields[7] if len(fields) > 7 else 0.0)


class CpuMeter:
    """Share of all CPUs busy between start() and stop(), and of it the share stolen by the hypervisor."""

    steal = 0.0

    def start(self) -> CpuMeter:
        """Remember the counters now."""
        self._start = cpu_times()
        return self

    def stop(self) -> float:
        """Busy share since start, 0..1 (self.steal: the stolen share)."""
        busy, total, steal = cpu_times()
        span = max(1e-9, total - self._start[1])
        self.steal = (steal - self._start[2]) / span
        return (busy - self._start[0]) / span


def process_cpu(pid: int, *, children: bool = False) -> float:
    """CPU seconds (user + system) a process has used; with children=True, plus its live child processes'."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    used = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    if children:
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and entry.name != str(pid):
                try:
                    stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if stat[1] == str(pid):  # ppid
                    used += (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
    return used


def database_backends(database: str) -> list[int]:
    """Pids of the PostgreSQL backends serving a database (by their process title)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if title.startswith("postgres:") and f" {database} " in title:
                pids.append(int(entry.name))
    return pids


def machine() -> dict[str, Any]:
    """CPU count and model, memory, Python, load average."""
    from benchmarks.ingest_observations import machine as base

    info = base()
    info["load"] = round(os.getloadavg()[0], 2)
    return info


def percentile(values: Sequence[float], q: float) -> float:
    """The q-quantile (nearest rank) of values."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))] if ordered else 0.0


# ---------------------------------------------------------------------------------------------------------------
# database and server


@contextmanager
def fresh_database() -> Iterator[str]:
    """A new, empty PostgreSQL database (SQLAlchemy URL), dropped afterwards."""
    with scratch_database("postgresql", "saola_bench_rest") as url:
        yield url


def prepare(url: str, subjects: int) -> tuple[str, list[str], int]:
    """Migrate, load units, create the indicators and a source; returns (API key, unit codes, source id)."""
    from sqlalchemy import select

    from saola.config import Settings
    from saola.core.auth.context import system_actor
    from saola.core.indicators.schemas import IndicatorCreate
    from saola.core.indicators.service import create_indicator
    from saola.core.sources.service import create_source
    from saola.core.units.models import Unit
    from saola.core.units.service import load_official_units
    from saola.db.engine import make_engine, make_session_factory, transaction
    from saola.db.migrate import upgrade

    upgrade(url)
    engine = make_engine(Settings(database_url=url, data_dir=Path(tempfile.gettempdir()), secret_key=SECRET))
    try:
        factory = make_session_factory(engine)
        system = system_actor("benchmark")
        with transaction(factory) as session:
            load_official_units(session)
        with transaction(factory) as session:
            for code in INDICATORS:
                create_indicator(session, actor=system, data=IndicatorCreate(
                    code=code, name_vi=f"Chỉ số {code}", domain="bench", min_value=-1e9, max_value=1e9))
            units = list(session.scalars(select(Unit.code).where(Unit.level == "commune").order_by(Unit.code)
                                         .limit(subjects)))
            source, key = create_source(session, actor=system, name=f"bench-{uuid.uuid4().hex[:6]}", scope="VN",
                                        allowed_writes=["observations:bench.*"])
            return key, units, source.id
    finally:
        engine.dispose()


BENCH_BUS = "redis://127.0.0.1:6379/14"  # a Redis database of its own, emptied before each run


def serve(url: str, log: Path, workers: int = 1, bus_url: str | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """Saola on a free port in its own process; returns the process and its base URL.

    Several workers share one bus as in production (SAOLA_BUS_URL, a Redis Stream), so every worker's rules
    engine and live stream see every batch.
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "SAOLA_DATABASE_URL": url, "SAOLA_SECRET_KEY": SECRET, "SAOLA_LOG_LEVEL": "WARNING",
           "SAOLA_RUN_JOBS": "false", "SAOLA_DATA_DIR": tempfile.gettempdir()}
    if bus_url:
        import redis

        redis.Redis.from_url(bus_url).flushdb()
        env["SAOLA_BUS_URL"] = bus_url
    command = [sys.executable, "-m", "uvicorn", "saola.app:create_app", "--factory", "--host", "127.0.0.1",
               "--port", str(port), "--log-level", "warning", "--no-access-log", "--http", "httptools",
               "--loop", "uvloop", "--workers", str(workers)]
    process = subprocess.Popen(command, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/api/health", timeout=2).status_code < 500:
                return process, base
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"the benchmark server did not start: {log.read_text(errors='replace')[-2000:]}")


# ---------------------------------------------------------------------------------------------------------------
# the load


def readings(units: Sequence[str], points: int, start: datetime, minutes_per_batch: float,
             batch: int) -> Iterator[dict[str, Any]]:
    """`points` readings in send order: each batch covers `minutes_per_batch` minutes of its block of series."""
    series = [(u, i) for u in units for i in INDICATORS]
    minutes = max(1, round(minutes_per_batch))
    per_block = max(1, batch // minutes)  # series in one batch
    stamps: dict[int, str] = {}
    made = 0
    minute0 = 0
    while made < points:
        for first in range(0, len(series), per_block):
            block = series[first:first + per_block]
            for m in range(minute0, minute0 + minutes):
                ts = stamps.get(m) or stamps.setdefault(m, (start + timedelta(minutes=m)).isoformat())
                for unit, ind in block:
                    yield {"indicator": ind, "unit": unit, "ts": ts, "value": (made % 997) / 10.0}
                    made += 1
                    if made >= points:
                        return
        minute0 += minutes


def batches(units: Sequence[str], points: int, batch: int, start: datetime,
            minutes_per_batch: float = 0.0) -> list[tuple[bytes, int]]:
    """Pre-serialised JSON bodies of `batch` readings each, `points` in all: (body, first reading's index).

    minutes_per_batch 0 means: every series once per minute across the whole network, so a batch holds
    batch / series minutes (2.5 for 1,000 communes by 4 indicators).
    """
    per = minutes_per_batch or max(1.0, batch / (len(units) * len(INDICATORS)))
    out: list[tuple[bytes, int]] = []
    items: list[dict[str, Any]] = []
    index = 0
    for item in readings(units, points, start, per, batch):
        items.append(item)
        if len(items) == batch:
            out.append((orjson.dumps({"items": items}), index))
            index += batch
            items = []
    if items:
        out.append((orjson.dumps({"items": items}), index))
    return out


def send(base: str, key: str, bodies: list[tuple[bytes, int]], clients: int, seconds: float, fresh: bool = False,
         ) -> tuple[int, float, list[float], int]:
    """POST bodies from `clients` threads until done or `seconds` pass; (points, elapsed, latencies, sent).

    fresh=True opens a connection per batch (several workers: each batch goes to whichever worker accepts it, as
    batches from many sources would; two kept-alive connections may both stay with one worker for the whole run).
    """
    lock = threading.Lock()
    queue = list(reversed(bodies))
    latencies: list[float] = []
    accepted = [0]
    errors: list[str] = []
    deadline = time.perf_counter() + seconds
    done = [0]

    def worker() -> None:
        with httpx.Client(base_url=base, timeout=120, headers={"X-API-Key": key,
                                                               "Content-Type": "application/json"}) as client:
            while time.perf_counter() < deadline:
                with lock:
                    if not queue:
                        return
                    body, _ = queue.pop()
                started = time.perf_counter()
                r = client.post("/api/ingest/observations", content=body,
                                headers={"Connection": "close"} if fresh else None)
                took = time.perf_counter() - started
                if r.status_code != 200:
                    errors.append(r.text[:300])
                    return
                with lock:
                    latencies.append(took)
                    accepted[0] += r.json()["accepted"]
                    done[0] += 1

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"ingest failed: {errors[0]}")
    return accepted[0], elapsed, latencies, done[0]


def raw_rows(url: str, bodies: list[tuple[bytes, int]], sent: int, source_id: int) -> list[list[tuple[Any, ...]]]:
    """The rows of the batches that were sent, resolved to integer keys as the COPY takes them (not timed)."""
    pg = url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(pg) as conn:
        indicators = dict(conn.execute("SELECT code, id FROM indicators WHERE code LIKE 'bench.%'").fetchall())
        subjects = dict(conn.execute("SELECT key, id FROM subjects").fetchall())
    out = []
    for body, _ in bodies[:sent]:
        rows = []
        for item in orjson.loads(body)["items"]:
            ts = datetime.fromisoformat(item["ts"]).astimezone(UTC)
            rows.append((indicators[item["indicator"]], subjects["u:" + item["unit"]], ts, item["value"], 0,
                         source_id))
        out.append(rows)
    return out


def copy_raw(url: str, chunks: list[list[tuple[Any, ...]]], clients: int) -> tuple[int, float, list[float]]:
    """COPY the chunks into a fresh copy of the observations table over `clients` connections."""
    pg = url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(pg, autocommit=True) as conn:
        conn.execute("CREATE TABLE observations_raw (LIKE observations INCLUDING ALL)")
    lock = threading.Lock()
    queue = list(reversed(chunks))
    latencies: list[float] = []
    count = [0]

    def worker() -> None:
        with psycopg.connect(pg) as conn:
            while True:
                with lock:
                    if not queue:
                        return
                    rows = queue.pop()
                started = time.perf_counter()
                with conn.cursor() as cur, cur.copy(
                    "COPY observations_raw (indicator_id, subject_id, ts, value, quality, source_id) "
                    "FROM STDIN (FORMAT BINARY)"
                ) as copy:
                    copy.set_types(["int4", "int4", "timestamptz", "float8", "int2", "int4"])
                    for row in rows:
                        copy.write_row(row)
                conn.commit()
                with lock:
                    latencies.append(time.perf_counter() - started)
                    count[0] += len(rows)

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return count[0], time.perf_counter() - started, latencies


def checkpoint(url: str) -> None:
    """Write every dirty page out now, so that both phases start clean (no checkpoint left over from loading or
    from the other phase, whose full-page writes would fall on one of them only)."""
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://", 1), autocommit=True) as conn:
        conn.execute("CHECKPOINT")


def wait_folded(url: str, timeout: float = 120.0) -> float:
    """Seconds until the server has folded every queued rollup delta (PostgreSQL's ingest folds after commit)."""
    from saola.core.observations.rollups import queue_depth

    started = time.perf_counter()
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://", 1), autocommit=True) as conn:
        while queue_depth(conn) and time.perf_counter() - started < timeout:
            time.sleep(0.005)
    return time.perf_counter() - started


def stored_count(url: str) -> tuple[int, int]:
    """Rows in observations and the sum of hourly rollup counts."""
    pg = url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(pg) as conn:
        rows = conn.execute("SELECT count(*) FROM observations").fetchone()[0]  # type: ignore[index]
        hourly = conn.execute("SELECT coalesce(sum(count), 0) FROM observation_rollups_hourly").fetchone()[0]  # type: ignore[index]
    return int(rows), int(hourly)


def run(seconds: float = 25.0, batch: int = 10_000, clients: int = 2, subjects: int = 1000,
        max_rate: float = 300_000.0, workers: int = 1, minutes_per_batch: float = 0.0,
        progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Measure REST ingest and raw COPY of the same rows; returns the figures."""
    say = progress or (lambda _m: None)
    load_start = round(os.getloadavg()[0], 2)
    points = max(batch, int(seconds * max_rate) // batch * batch)
    start = (datetime.now(UTC) - timedelta(days=20)).replace(minute=0, second=0, microsecond=0)
    with fresh_database() as url, tempfile.TemporaryDirectory(prefix="saola-bench-rest-") as folder:
        say("preparing a fresh PostgreSQL database")
        key, units, source_id = prepare(url, subjects)
        say(f"serialising up to {points:,} readings in batches of {batch:,}")
        bodies = batches(units, points, batch, start, minutes_per_batch)
        gc.collect()
        gc.freeze()
        process, base = serve(url, Path(folder) / "server.log", workers, BENCH_BUS if workers > 1 else None)
        try:
            # One warm-up batch (imports, prepared statements, subjects) outside the measurement.
            warm = batches(units, batch, batch, start - timedelta(days=1), minutes_per_batch)
            send(base, key, warm, 1, 60)
            checkpoint(url)
            say(f"REST: {clients} client thread(s) for up to {seconds:.0f} s")
            database = url.rsplit("/", 1)[1]
            server_before = process_cpu(process.pid, children=True)
            db_before = {pid: process_cpu(pid) for pid in database_backends(database)}
            meter = CpuMeter().start()
            accepted, elapsed, latencies, sent = send(base, key, bodies, clients, seconds, fresh=workers > 1)
            # The clock stops once every accepted reading is also in the rollups and latest values.
            drain = wait_folded(url)
            sending, elapsed = elapsed, elapsed + drain
            cpu_rest = meter.stop()
            steal_rest = meter.steal
            server_cpu = process_cpu(process.pid, children=True) - server_before
            db_cpu = sum(process_cpu(pid) - db_before.get(pid, 0.0) for pid in database_backends(database))
        finally:
            process.terminate()
            process.wait(30)
        rows, hourly = stored_count(url)
        assert rows == accepted + batch and hourly == rows, (rows, hourly, accepted)
        say("raw: the same rows by COPY")
        chunks = raw_rows(url, bodies, sent, source_id)
        checkpoint(url)
        meter = CpuMeter().start()
        copied, raw_elapsed, raw_latencies = copy_raw(url, chunks, clients)
        cpu_raw = meter.stop()
        steal_raw = meter.steal
        gc.unfreeze()
        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://", 1)) as conn:
            version = str(conn.execute("SHOW server_version").fetchone()[0]).split()[0]  # type: ignore[index]
    rest_rate = accepted / elapsed
    raw_rate = copied / raw_elapsed
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"), "machine": machine(), "postgres": version,
        "load_start": load_start, "send_seconds": sending,
        "batch": batch, "clients": clients, "workers": workers, "subjects": len(units), "seconds": elapsed,
        "minutes_per_batch": minutes_per_batch or batch / (len(units) * len(INDICATORS)),
        "points": accepted, "rest_per_s": rest_rate, "drain_ms": drain * 1000,
        "rest_p50_ms": percentile(latencies, 0.5) * 1000,
        "rest_p95_ms": percentile(latencies, 0.95) * 1000, "rest_cpu": cpu_rest,
        "raw_points": copied, "raw_seconds": raw_elapsed, "raw_per_s": raw_rate,
        "raw_p50_ms": percentile(raw_latencies, 0.5) * 1000, "raw_cpu": cpu_raw, "ratio": rest_rate / raw_rate,
        "rest_steal": steal_rest, "raw_steal": steal_raw,
        "server_cpu_us_per_point": server_cpu / max(1, accepted) * 1e6,
        "db_cpu_us_per_point": db_cpu / max(1, accepted) * 1e6,
    }


# ---------------------------------------------------------------------------------------------------------------
# report


def table(report: dict[str, Any]) -> Table:
    """The figures as a rich table."""
    t = Table(title=f"REST ingest into PostgreSQL, batches of {report['batch']:,}, {report['clients']} client(s)")
    for col in ("path", "points", "seconds", "points/s", "p50 / p95 per batch", "CPU busy"):
        t.add_column(col, justify="left" if col == "path" else "right")
    t.add_row("REST (Saola)", f"{report['points']:,}", f"{report['seconds']:.1f}", f"{report['rest_per_s']:,.0f}",
              f"{report['rest_p50_ms']:.0f} / {report['rest_p95_ms']:.0f} ms", f"{report['rest_cpu']:.0%}")
    t.add_row("raw COPY", f"{report['raw_points']:,}", f"{report['raw_seconds']:.1f}", f"{report['raw_per_s']:,.0f}",
              f"{report['raw_p50_ms']:.0f} ms", f"{report['raw_cpu']:.0%}")
    t.add_row("ratio", "", "", f"{report['ratio']:.2f}", "", "")
    t.caption = (f"CPU per point: server {report['server_cpu_us_per_point']:.1f} µs, "
                 f"PostgreSQL {report['db_cpu_us_per_point']:.1f} µs")
    return t


def median_run(reports: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median REST rate, carrying every run's rate, raw rate, ratio and stolen share ("runs")."""
    ordered = sorted(reports, key=lambda r: r["rest_per_s"])
    chosen = dict(ordered[(len(ordered) - 1) // 2])
    chosen["runs"] = [{k: r.get(k, 0.0) for k in ("rest_per_s", "raw_per_s", "ratio", "rest_steal", "raw_steal")}
                      for r in reports]
    return chosen


def markdown(report: dict[str, Any], notes: str = "") -> str:
    """This benchmark's section of docs/benchmarks.md, markers included."""
    m = report["machine"]
    rest, raw = report["rest_per_s"], report["raw_per_s"]
    verdict = (f"Target: at least 100,000 points/s and 0.4 of raw — {'met' if rest >= 100_000 else 'missed'} "
               f"for the rate ({rest:,.0f}), {'met' if report['ratio'] >= 0.4 else 'missed'} for the ratio "
               f"({report['ratio']:.2f}).")
    lines = [
        START,
        "## REST batch ingest (POST /api/ingest/observations) against raw COPY",
        "",
        f"Measured {report['date']} on {m['nproc']} CPUs ({m['cpu']}), {m['ram_gb']} GB RAM, Python {m['python']}, "
        f"PostgreSQL {report['postgres']} on the same machine; load average {report['load_start']} at the start "
        f"and {m['load']} at the end (the machine is shared with other work: compare the ratio).",
        "",
        f"Saola in its own process (uvicorn, {report['workers']} worker{'s' if report['workers'] > 1 else ''}"
        f"{' sharing a Redis bus (SAOLA_BUS_URL), as several workers must' if report['workers'] > 1 else ''}, "
        f"httptools, uvloop); {report['clients']} "
        f"client threads POST pre-serialised JSON batches of {report['batch']:,} readings "
        + ("each on a connection of its own (so that each goes to whichever worker accepts it, as batches from many "
           "sources would; two kept-alive connections may stay with one worker for a whole run) "
           if report["workers"] > 1 else "with keep-alive ")
        + f"for {report['seconds']:.0f} s: {report['subjects']:,} communes by 4 indicators, a reading a minute, "
        f"{report['minutes_per_batch']:g} minutes of each series per batch. Each batch "
        "goes the whole way: source key, body parse (orjson), validation, scope and allowed writes, duplicate "
        "detection, COPY into observations, the rollup deltas queued and folded into the hourly, daily and latest "
        "tables (SAOLA_ROLLUP_FOLD_MS 500), the outbox row and the bus message carrying the new rows; the clock "
        f"stops when the last batch is answered and the fold queue is empty ({report['drain_ms']:.0f} ms after the "
        "last answer), so every point counted is stored, rolled up and on the bus. *raw COPY*: the same rows, "
        "already resolved to "
        "integer keys, COPYed (psycopg, binary) into a copy of the observations table over the same number of "
        "connections, one transaction per batch. PostgreSQL is checkpointed before each phase.",
        "",
        "| path | points | points/s | p50 / p95 per batch | machine CPU busy | of it stolen by the host |",
        "|---|---:|---:|---:|---:|---:|",
        f"| REST, Saola | {report['points']:,} | {rest:,.0f} | {report['rest_p50_ms']:.0f} / "
        f"{report['rest_p95_ms']:.0f} ms | {report['rest_cpu']:.0%} | {report.get('rest_steal', 0):.0%} |",
        f"| raw COPY | {report['raw_points']:,} | {raw:,.0f} | {report['raw_p50_ms']:.0f} ms | "
        f"{report['raw_cpu']:.0%} | {report.get('raw_steal', 0):.0%} |",
        f"| REST / raw | | {report['ratio']:.2f} | | | |",
        "",
        f"CPU per point: Saola's process {report['server_cpu_us_per_point']:.1f} µs, the PostgreSQL backends "
        f"{report['db_cpu_us_per_point']:.1f} µs.",
        "",
        verdict + f" Anchor: {ANCHOR}.",
    ]
    runs = report.get("runs", [])
    if len(runs) > 1:
        listed = "; ".join(f"{r['rest_per_s']:,.0f} points/s against {r['raw_per_s']:,.0f} raw ({r['ratio']:.2f}, "
                           f"{max(r['rest_steal'], r['raw_steal']):.0%} stolen)" for r in runs)
        lines += ["", f"The table shows the median of {len(runs)} runs by REST rate; all of them, in order: {listed}."]
    if notes:
        lines += ["", notes]
    lines += ["", f"Reproduce: `python -m benchmarks.rest_ingest "
                  f"--seconds {round(report.get('send_seconds', report['seconds']))} "
                  f"--batch {report['batch']} --clients {report['clients']} --workers {report['workers']} "
                  f"--subjects {report['subjects']} "
                  f"--minutes-per-batch {report['minutes_per_batch']:g}"
                  + (f" --repeat {len(runs)}" if len(runs) > 1 else "") + "`", END]
    return "\n".join(lines)


def write_docs(report: dict[str, Any], path: Path = DOCS, notes: str = "") -> None:
    """Replace this benchmark's section of docs/benchmarks.md, leaving the others as they are."""
    replace_section(path, START, END, markdown(report, notes))



def main(argv: Sequence[str] | None = None) -> None:
    """Command line: run, print, write docs/benchmarks.md."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=25.0)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--subjects", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--minutes-per-batch", type=float, default=0.0,
                        help="minutes of each series in one batch (default: the whole network once a minute)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs (each REST then raw); the docs show the median run by REST rate and list all")
    parser.add_argument("--notes", default="", help="a paragraph added under the table")
    parser.add_argument("--no-docs", action="store_true", help="do not write docs/benchmarks.md")
    args = parser.parse_args(argv)
    console = Console()
    reports = []
    for _ in range(max(1, args.repeat)):
        reports.append(run(args.seconds, args.batch, args.clients, args.subjects, workers=args.workers,
                           minutes_per_batch=args.minutes_per_batch, progress=lambda m: console.log(m)))
        console.print(table(reports[-1]))
    report = median_run(reports)
    if not args.no_docs:
        write_docs(report, notes=args.notes)
        console.print(f"written to {DOCS}")


if __name__ == "__main__":
    main()
