"""From a reading crossing a threshold to its alert on the live stream, beside the reading itself on the stream.

    python -m benchmarks.alert_latency --backends postgresql,sqlite

Each run gets a fresh database (see benchmarks.rules_ingest: the unit tree, 200 places of Lâm Đồng, 1,000 enabled
threshold rules of which 100 watch the streamed indicators) plus one rule on a fifth indicator, `bench.level`
(fires at 100, clears at 50). Saola runs in its own process under uvicorn, as in production, with the rules engine
its lifespan starts. In this process:

  feeder  POSTs batches of readings to /api/ingest/observations (a source's API key) at a fixed rate (5,000
          readings/s by default: batches of 250 every 50 ms); every batch carries two `bench.level` readings that
          cross the threshold (a new pair of places each time), the rest are ordinary.
  reader  follows GET /api/stream?topics=observations,alerts (SSE, httpx) and notes when each crossing reading
          arrives in its `observations` frame and when its `alerts.firing` frame arrives.

Both latencies run from the moment the batch was due (so a feeder falling behind counts) to the frame's arrival;
side by side they show what the rules add to the stream: evaluating the batch and the alert's own transaction.
Target: the alert's p99 at most 100 ms.
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import os
import platform
import random
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
from rich.console import Console
from rich.table import Table
from sqlalchemy import select

from benchmarks.docs_section import replace_section
from benchmarks.rest_ingest import CpuMeter
from benchmarks.rules_ingest import LEVEL, PROVINCE, STREAM, T0, _prepared
from benchmarks.scratch import percentile as _percentile
from saola.config import Settings
from saola.core.alerts.models import Alert
from saola.core.auth.context import system_actor
from saola.core.auth.service import create_user, issue_token
from saola.core.rules.schemas import RuleCreate
from saola.core.rules.service import create_rule
from saola.core.sources.service import create_source
from saola.db.engine import make_session_factory, transaction

DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
START, END = "<!-- alert-latency:start -->", "<!-- alert-latency:end -->"
console = Console()


def _serve(url: str, data_dir: str, port: int, ready: Any, stop: Any, results: Any) -> None:
    """The server process: the application under uvicorn until asked to stop; then the engine's own figures."""
    import uvicorn

    from saola.app import create_app
    from saola.core.rules.engine import get_engine
    from saola.logging import configure_logging

    configure_logging("WARNING")  # as `saola serve` does; a line per request would weigh on the measure
    pauses: list[tuple[int, float]] = []  # (generation, seconds) of the server's garbage collections under load
    began: list[float] = [0.0]

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            began[0] = time.perf_counter()
        else:
            pauses.append((info["generation"], time.perf_counter() - began[0]))

    gc.callbacks.append(on_gc)

    settings = Settings(database_url=url, data_dir=Path(data_dir), secret_key="b" * 40, run_jobs=False,
                        log_level="WARNING")
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="critical",
                                           timeout_graceful_shutdown=1))  # the open stream is cut at the end
    thread = threading.Thread(target=server.run, name="bench-uvicorn", daemon=True)
    thread.start()
    while not server.started and thread.is_alive():
        time.sleep(0.02)
    pauses.clear()  # what startup collected is not part of the measure
    ready.set()
    stop.wait()
    engine = get_engine()
    if engine is not None:
        engine.wait(30)
    results.put({"durations": list(engine.durations) if engine else [],
                 "stats": dict(engine.stats) if engine else {}, "threaded": bool(engine and engine.threaded),
                 "gc": pauses})
    server.should_exit = True
    thread.join(timeout=10)


class _Reader(threading.Thread):
    """An SSE client of /api/stream noting when each crossing reading and each alert of the rule arrive, keyed
    by the reading's data time (the alert's started_at)."""

    def __init__(self, base: str, token: str, rule_id: str) -> None:
        super().__init__(name="bench-sse", daemon=True)
        self.url = f"{base}/api/stream?topics=observations,alerts"
        self.headers = {"Authorization": f"Bearer {token}"}
        self.rule_id = rule_id
        self.readings: dict[float, float] = {}  # data time -> first arrival of a crossing reading of that time
        self.alerts: dict[float, list[float]] = {}  # data time -> arrivals of alerts.firing frames
        self.connected = threading.Event()

    def run(self) -> None:
        """Follow the stream until the server closes it."""
        try:
            with httpx.Client(timeout=None) as client, client.stream("GET", self.url, headers=self.headers) as r:
                for line in r.iter_lines():
                    if line.startswith("retry:"):
                        self.connected.set()
                    elif line.startswith("data: "):
                        self._frame(time.monotonic(), orjson.loads(line[6:]))
        except httpx.HTTPError:  # the server going away at the end of the run
            return

    def _frame(self, arrived: float, data: dict[str, Any]) -> None:
        topic = data.get("topic", "")
        if topic.startswith("observations."):
            for item in data.get("items", ()):
                if item.get("indicator") == LEVEL and item.get("value", 0) >= 100:
                    self.readings.setdefault(datetime.fromisoformat(item["ts"]).timestamp(), arrived)
        elif topic == "alerts.firing" and data.get("rule_id") == self.rule_id:
            started = datetime.fromisoformat(data["started_at"]).timestamp()
            self.alerts.setdefault(started, []).append(arrived)


def _batches(subjects: list[dict[str, Any]], batch: int, total: int) -> list[tuple[float, bytes]]:
    """(data time, JSON body) of every batch, made before the clock starts."""
    rng = random.Random(5)
    per_subject = len(STREAM) + 1
    size = max(1, batch // per_subject)
    out = []
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
        out.append((moment.timestamp(), orjson.dumps(items)))
    return out


def _stats(samples: Sequence[float]) -> dict[str, float]:
    ms = [s * 1000 for s in samples]
    return {"n": len(ms), "p50": _percentile(ms, 0.5), "p95": _percentile(ms, 0.95), "p99": _percentile(ms, 0.99),
            "max": max(ms, default=float("nan"))}


def latency(backend: str, *, rules: int, firing_rules: int, rate: int, batch: int, seconds: float,
            concurrency: int = 1) -> dict[str, Any]:
    """One run: the server in its own process, the feeder and the reader here."""
    with _prepared(backend, rules, firing_rules, engine_running=False) as (engine, subjects, _none), \
            tempfile.TemporaryDirectory(prefix="saola-bench-latency-") as data_dir:
        factory = make_session_factory(engine)
        system = system_actor("benchmark")
        with transaction(factory) as session:
            rule = create_rule(session, actor=system, data=RuleCreate(
                name="Mực nước vượt báo động", kind="threshold", unit_code=PROVINCE, severity="high", flap_limit=0,
                params={"indicator": LEVEL, "threshold": 100.0, "clear_threshold": 50.0}))
            rule_id = str(rule.id)
            user = create_user(session, actor=system, username=f"bench{uuid.uuid4().hex[:8]}",
                               password=uuid.uuid4().hex, role="operator", scope="VN")
            _source, key = create_source(session, actor=system, name=f"bench-{uuid.uuid4().hex[:8]}",
                                         scope=PROVINCE, rate_limit_per_minute=1_000_000)
        url = engine.url.render_as_string(hide_password=False)
        settings = Settings(database_url=url, data_dir=Path(data_dir), secret_key="b" * 40)
        token, _ = issue_token(settings, user)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        base = f"http://127.0.0.1:{port}"
        interval = batch / rate
        total = max(1, int(seconds / interval))
        bodies = _batches(subjects, batch, total)
        sent = sum(len(orjson.loads(b)) for _, b in bodies[:1]) * total
        spawn = multiprocessing.get_context("spawn")
        ready, stop, results = spawn.Event(), spawn.Event(), spawn.Queue()
        if backend == "postgresql":
            # Creating and loading the database wrote a lot of WAL: checkpoint now rather than in the middle of
            # the 20 s measured (a checkpoint's writes stall commits on this machine's disk).
            with engine.connect() as conn:
                conn.exec_driver_sql("CHECKPOINT")
        server = spawn.Process(target=_serve, args=(url, data_dir, port, ready, stop, results), daemon=True)
        server.start()
        try:
            if not ready.wait(60):
                raise RuntimeError("the server did not start")
            reader = _Reader(base, token, rule_id)
            reader.start()
            if not reader.connected.wait(30):
                raise RuntimeError("the stream did not connect")
            headers = {"X-API-Key": key, "Content-Type": "application/json"}
            start = time.monotonic() + 0.2
            meter = CpuMeter().start()  # its steal: CPU the hypervisor gave to other guests meanwhile
            due = {ts: start + k * interval for k, (ts, _) in enumerate(bodies)}
            posts: list[float] = []
            failures: list[BaseException] = []

            def feed(lane: int) -> None:
                # Lane j sends batches j, j + n, j + 2n ... each at its due time (or at once when late).
                try:
                    with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
                        for ts, body in bodies[lane::concurrency]:
                            wait = due[ts] - time.monotonic()
                            if wait > 0:
                                time.sleep(wait)
                            began = time.monotonic()
                            client.post("/api/ingest/observations", content=body).raise_for_status()
                            posts.append(time.monotonic() - began)
                except BaseException as exc:  # reported by the main thread
                    failures.append(exc)

            lanes = [threading.Thread(target=feed, args=(j,), name=f"bench-feed-{j}") for j in range(concurrency)]
            for lane in lanes:
                lane.start()
            for lane in lanes:
                lane.join()
            if failures:
                raise failures[0]
            elapsed = time.monotonic() - start
            meter.stop()
            steal = meter.steal
            deadline = time.monotonic() + 10  # let the last frames arrive
            while (sum(map(len, reader.alerts.values())) < 2 * total or len(reader.readings) < total) \
                    and time.monotonic() < deadline:
                time.sleep(0.05)
            stop.set()
            figures = results.get(timeout=60)
        finally:
            stop.set()
            server.join(timeout=30)
            if server.is_alive():
                server.kill()
        with factory() as session:
            written = len(list(session.scalars(select(Alert.id).where(Alert.rule_id == rule.id))))
    gcs = [seconds for _gen, seconds in figures["gc"]]
    full = [seconds for gen, seconds in figures["gc"] if gen == 2]
    readings = [arrived - due[ts] for ts, arrived in reader.readings.items() if ts in due]
    alerts = [arrived - due[ts] for ts, times in reader.alerts.items() if ts in due for arrived in times]
    rules_share = [times[0] - reader.readings[ts] for ts, times in reader.alerts.items() if ts in reader.readings]
    result = {"backend": backend, "rate": rate, "batch": batch, "batches": total, "achieved": sent / elapsed,
              "concurrency": concurrency,
              "reading": _stats(readings), "alert": _stats(alerts), "gap": _stats(rules_share),
              "post_p50_ms": _percentile(posts, 0.5) * 1000, "crossings": 2 * total, "alerts_written": written,
              "engine_p50_ms": _percentile(figures["durations"], 0.5) * 1000,
              "engine_p99_ms": _percentile(figures["durations"], 0.99) * 1000, "threaded": figures["threaded"],
              "steal": steal, "gc_count": len(gcs), "gc_full": len(full), "gc_longest_ms": max(gcs, default=0) * 1000}
    console.print(f"  {backend} / {batch}: {result['achieved']:,.0f} readings/s; reading on the stream p50 "
                  f"{result['reading']['p50']:.1f} p99 {result['reading']['p99']:.1f} ms; alert p50 "
                  f"{result['alert']['p50']:.1f} p99 {result['alert']['p99']:.1f} ms "
                  f"({result['alert']['n']}/{result['crossings']} alerts); alert after reading p50 "
                  f"{result['gap']['p50']:.1f} p99 {result['gap']['p99']:.1f} ms; engine p50 "
                  f"{result['engine_p50_ms']:.1f} p99 {result['engine_p99_ms']:.1f} ms per round; POST p50 "
                  f"{result['post_p50_ms']:.1f} ms; garbage collections {len(gcs)}, of them {len(full)} full, "
                  f"longest {max(gcs, default=0) * 1000:.1f} ms; host steal {steal:.0%}")
    return result


def _markdown(runs: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [
        START,
        "## Alert latency on the live stream (`python -m benchmarks.alert_latency`)",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {platform.machine()}, {os.cpu_count()} CPU, Python "
        f"{platform.python_version()}, load average {args.load:.1f} when it started (the machine is shared with "
        "other work). Saola under uvicorn in its own process with its rules engine (1,000 enabled threshold rules "
        "besides the one measured); a feeder POSTs batches to `/api/ingest/observations` at "
        f"{args.rate:,} readings/s for {args.seconds:g} s on {args.concurrency} connection(s), two readings of "
        "every batch crossing the measured "
        "rule's threshold; an SSE client of `GET /api/stream?topics=observations,alerts` notes when each crossing "
        "reading arrives in its `observations` frame and when its `alerts.firing` frame arrives. Both are timed "
        "from the moment the batch was due (a feeder falling behind counts), on the same machine.",
        "",
        "| backend | batch (every) | run | host steal | achieved readings/s | what reaches the stream | n | p50 ms "
        "| p95 ms | p99 ms | max ms |",
        "|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        head = (f"| {r['backend']} | {r['batch']} ({1000 * r['batch'] / r['rate']:.0f} ms) | {r.get('run', 1)} "
                f"| {r['steal']:.0%} | {r['achieved']:,.0f} ")
        for label, key in (("the crossing readings (their batch's frame)", "reading"),
                           ("their alerts (target p99 <= 100)", "alert"),
                           ("alert after reading", "gap")):
            s = r[key]
            p99 = f"**{s['p99']:.1f}**" if key == "alert" else f"{s['p99']:.1f}"
            lines.append(f"{head}| {label} | {s['n']} | {s['p50']:.1f} | {s['p95']:.1f} | {p99} | {s['max']:.1f} |")
            head = "| | | | | "
    lines += [
        "",
        "The engine's own time per evaluation round in the server (evaluating what was queued and writing its "
        "alert changes in one transaction), and the feeder's POST time per batch (p50):",
        "",
        "| backend | batch | run | engine thread | engine p50 / p99 ms per round | POST p50 ms | alerts written "
        "| garbage collections (full) under load, longest |",
        "|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    lines += [f"| {r['backend']} | {r['batch']} | {r.get('run', 1)} | "
              f"{'own thread' if r['threaded'] else 'writer thread'} | "
              f"{r['engine_p50_ms']:.1f} / {r['engine_p99_ms']:.1f} | {r['post_p50_ms']:.1f} | {r['alerts_written']} "
              f"| {r['gc_count']} ({r['gc_full']}), {r['gc_longest_ms']:.1f} ms |" for r in runs]
    groups: dict[tuple[str, int], list[float]] = {}
    for r in runs:
        groups.setdefault((r["backend"], r["batch"]), []).append(r["alert"]["p99"])
    for (backend, batch), p99s in groups.items():
        if len(p99s) > 1:
            ordered = sorted(p99s)
            met = sum(1 for p in p99s if p <= 100)
            lines += ["", f"{backend}, batches of {batch}: alert p99 over {len(p99s)} runs — lowest "
                      f"{ordered[0]:.1f}, median {ordered[len(ordered) // 2]:.1f}, highest {ordered[-1]:.1f} ms; "
                      f"{met} of {len(p99s)} runs at or under 100 ms. *host steal* is the share of the machine's CPU "
                      "time the hypervisor gave to other guests during the run (/proc/stat)."]
    behind = [r for r in runs if r["achieved"] < 0.95 * r["rate"]]
    if behind:
        lines += ["", "Where the achieved rate is below the asked one, the server could not take that many "
                  "readings a second at the time: batches queued in the feeder and both latencies are mostly "
                  "that queue."]
    lines += ["", f"Reproduce: `python -m benchmarks.alert_latency --backends {args.backends} --rate {args.rate} "
              f"--batches {args.batches} --seconds {args.seconds:g} --concurrency {args.concurrency} "
              f"--repeat {args.repeat}`", END]
    return "\n".join(lines)


def write_docs(section: str, path: Path = DOCS) -> None:
    """Replace this benchmark's section of docs/benchmarks.md (other sections are left as they are)."""
    replace_section(path, START, END, section)


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every backend and batch size asked for."""
    runs = []
    for backend in [b for b in args.backends.split(",") if b]:
        for batch in [int(b) for b in args.batches.split(",") if b]:
            for k in range(args.repeat):
                console.print(f"[bold]{backend}[/bold]: batches of {batch}, run {k + 1} of {args.repeat}")
                runs.append(latency(backend, rules=args.rules, firing_rules=args.firing, rate=args.rate,
                                    batch=batch, seconds=args.seconds, concurrency=args.concurrency))
                runs[-1]["run"] = k + 1
    return runs


def parser() -> argparse.ArgumentParser:
    """The command line of the benchmark."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backends", default="postgresql,sqlite")
    p.add_argument("--rules", type=int, default=1000)
    p.add_argument("--firing", type=int, default=5, help="rules among them that fire now and then")
    p.add_argument("--rate", type=int, default=5000, help="readings per second")
    p.add_argument("--batches", default="250", help="readings per batch (comma-separated for several runs)")
    p.add_argument("--seconds", type=float, default=20.0, help="length of each run")
    p.add_argument("--concurrency", type=int, default=1, help="connections the feeder sends on (batches in flight)")
    p.add_argument("--repeat", type=int, default=1, help="runs of each configuration (a fresh database each)")
    p.add_argument("--no-docs", action="store_true", help="do not update docs/benchmarks.md")
    return p


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark, print the table and update docs/benchmarks.md."""
    args = parser().parse_args(argv)
    args.load = os.getloadavg()[0]
    runs = run(args)
    table = Table(title="crossing reading -> alert on /api/stream")
    for column in ("backend / batch", "achieved/s", "reading p50 / p99 ms", "alert p50 / p95 / p99 ms"):
        table.add_column(column)
    for r in runs:
        a, o = r["alert"], r["reading"]
        table.add_row(f"{r['backend']} / {r['batch']}", f"{r['achieved']:,.0f}", f"{o['p50']:.1f} / {o['p99']:.1f}",
                      f"{a['p50']:.1f} / {a['p95']:.1f} / {a['p99']:.1f}")
    console.print(table)
    if not args.no_docs:
        write_docs(_markdown(runs, args))
        console.print(f"updated {DOCS}")


if __name__ == "__main__":
    main()
