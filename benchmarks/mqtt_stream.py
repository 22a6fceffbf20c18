"""MQTT single-point messages from publish to stored to seen on /api/stream, against the real Mosquitto.

    python -m benchmarks.mqtt_stream --messages 300000 --rate 5000 --seconds 20

Saola runs as `saola serve --mqtt mqtt://127.0.0.1:1883` would (uvicorn in its own process, the MQTT door in that
process) on a fresh database, against a Mosquitto of the benchmark's own (or SAOLA_BENCH_MQTT). A national user
follows GET /api/stream?topics=observations from this process. A publisher process feeds `mosquitto_pub -l` (QoS 1,
one message per line and reading: {"api_key", "indicator", "unit", "ts", "value"}), which publishes to
saola/<source>/observations; each reading's value is the time its line was written, so the stream reader knows each
reading's publish-to-SSE latency. `--sensors` communes each report one indicator.

Phase 1, sustained: `--messages` readings offered at `--offered` a second (25,000 by default, above the 20,000
target; `mosquitto_pub -l` itself loses messages when its stdin outruns the broker's acknowledgements, so the load
is paced rather than unbounded); the rate is readings seen on the stream divided by the time from the first
publish to the last one seen. Phase 2, latency: `--rate` readings a second for
`--seconds` seconds; p50 / p99 publish-to-SSE latency. Readings not seen at the end are counted as lost.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
from rich.console import Console
from rich.table import Table

from benchmarks.docs_section import replace_section
from benchmarks.rest_ingest import (
    CpuMeter,
    database_backends,
    machine,
    percentile,
    process_cpu,
)

DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
START, END = "<!-- mqtt:start -->", "<!-- mqtt:end -->"
BROKER = os.environ.get("SAOLA_BENCH_MQTT", "mqtt://127.0.0.1:1883")
SECRET = "benchmark-secret-key-0123456789abcdef-mqtt"
PHASES = {"sustained": "bench.max", "latency": "bench.paced", "warmup": "bench.warm"}
USER, PASSWORD = "bench-leader", "bench-password-0123"


# ---------------------------------------------------------------------------------------------------------------
# the publisher (a separate process)


def _broker(url: str | None = None) -> tuple[str, int]:
    from urllib.parse import urlsplit

    parts = urlsplit(url or BROKER)
    return parts.hostname or "127.0.0.1", parts.port or 1883


@contextmanager
def private_broker() -> Iterator[tuple[str, int | None]]:
    """(URL, pid) of the broker to use: SAOLA_BENCH_MQTT when set (pid None), else a Mosquitto of our own.

    Our own broker lifts Mosquitto's per-client queue limit (max_queued_messages 1000 by default), which otherwise
    drops QoS 1 messages when a publisher outruns the subscriber for a moment, and keeps the machine's shared
    broker out of the measurement.
    """
    if "SAOLA_BENCH_MQTT" in os.environ:
        yield os.environ["SAOLA_BENCH_MQTT"], None
        return
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="saola-bench-broker-") as folder:
        conf = Path(folder) / "mosquitto.conf"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                        "max_queued_messages 0\nmax_inflight_messages 0\n")
        broker = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                with socket.socket() as probe:
                    if probe.connect_ex(("127.0.0.1", port)) == 0:
                        break
                time.sleep(0.05)
            yield f"mqtt://127.0.0.1:{port}", broker.pid
        finally:
            broker.terminate()
            broker.wait(10)


def publish(key: str, source: str, indicator: str, units: Sequence[str], count: int, rate: float, qos: int,
            start: datetime, broker: str = BROKER) -> dict[str, float]:
    """Publish `count` single readings (at `rate` a second, 0 for as fast as possible); returns timings.

    The MQTT client is Mosquitto's own `mosquitto_pub -l` (C, one message per line of its stdin, QoS 1 with up to
    1,000 in flight); this process only writes the lines, each stamped with the time it is written, in slices of
    a millisecond when paced. A Python MQTT client would cost more CPU than Saola's whole door on these 2 cores.
    """
    host, port = _broker(broker)
    pub = subprocess.Popen(["mosquitto_pub", "-h", host, "-p", str(port), "-t", f"saola/{source}/observations",
                            "-q", str(qos), "-M", "1000", "-l", "-i", f"bench-pub-{uuid.uuid4().hex[:8]}"],
                           stdin=subprocess.PIPE, bufsize=0)
    assert pub.stdin is not None
    head = b'{"api_key":"' + key.encode() + b'","indicator":"' + indicator.encode() + b'","unit":"'
    units_b = [u.encode() for u in units]
    n_units = len(units)
    stamps: dict[int, bytes] = {}

    def lines(first: int, last: int) -> bytes:
        now = repr(time.time()).encode()
        out = []
        for k in range(first, last):
            second, unit = divmod(k, n_units)
            ts = stamps.get(second) or stamps.setdefault(
                second, (start + timedelta(seconds=second)).isoformat().encode())
            out.append(b"".join((head, units_b[unit], b'","ts":"', ts, b'","value":', now, b"}\n")))
        return b"".join(out)

    started = time.time()
    sent = 0
    while sent < count:
        if rate:
            due = min(count, int((time.time() - started) * rate) + 1)
            if due <= sent:
                time.sleep(0.0005)
                continue
        else:
            due = min(count, sent + 500)
        pub.stdin.write(lines(sent, due))
        sent = due
    published = time.time()
    pub.stdin.close()
    pub.wait(600)  # mosquitto_pub leaves once every message is acknowledged
    return {"started": started, "published": published, "acked": time.time(), "count": count,
            "client_cpu": _children_cpu()}


def _children_cpu() -> float:
    """CPU seconds of this process's waited-for children (mosquitto_pub)."""
    usage = os.times()
    return usage.children_user + usage.children_system


def _publisher_main(argv: Sequence[str]) -> None:
    args = json.loads(argv[0])
    args["start"] = datetime.fromisoformat(args["start"])
    print(json.dumps(publish(**args)), flush=True)


def run_publisher(**kwargs: Any) -> subprocess.Popen[str]:
    """Start a publisher process; read its JSON result from stdout when it ends."""
    kwargs = {**kwargs, "start": kwargs["start"].isoformat()}
    return subprocess.Popen([sys.executable, "-m", "benchmarks.mqtt_stream", "--publish", json.dumps(kwargs)],
                            stdout=subprocess.PIPE, text=True)


# ---------------------------------------------------------------------------------------------------------------
# the stream reader


class StreamReader:
    """Follows /api/stream in a thread; counts readings per indicator and their publish-to-SSE latencies."""

    def __init__(self, base: str, token: str) -> None:
        self.url = f"{base}/api/stream?topics=observations"
        self.headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
        self.seen: dict[str, int] = {}
        self.latencies: dict[str, list[float]] = {}
        self.last_seen: dict[str, float] = {}
        self.first_seen: dict[str, float] = {}
        self.events = 0
        self.lock = threading.Lock()
        self.opened = threading.Event()
        self._response: httpx.Response | None = None
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        assert self.opened.wait(30), "the stream did not open"

    def _read(self) -> None:
        with httpx.Client(timeout=httpx.Timeout(30, read=None)) as client, \
                client.stream("GET", self.url, headers=self.headers) as response:
            self._response = response
            self.opened.set()
            try:
                for line in response.iter_lines():
                    if line.startswith("data: "):
                        now = time.time()
                        items = orjson.loads(line[6:])["items"]
                        with self.lock:
                            self.events += 1
                            for item in items:
                                code = item["indicator"]
                                self.seen[code] = self.seen.get(code, 0) + 1
                                self.latencies.setdefault(code, []).append(now - item["value"])
                                self.first_seen.setdefault(code, now)
                                self.last_seen[code] = now
            except (httpx.HTTPError, OSError):
                return

    def count(self, code: str) -> int:
        """Readings of an indicator seen so far."""
        with self.lock:
            return self.seen.get(code, 0)

    def wait(self, code: str, count: int, timeout: float) -> bool:
        """Wait until `count` readings of `code` were seen, or nothing new for `timeout` seconds."""
        last, quiet_since = -1, time.monotonic()
        while True:
            n = self.count(code)
            if n >= count:
                return True
            if n != last:
                last, quiet_since = n, time.monotonic()
            elif time.monotonic() - quiet_since > timeout:
                return False
            time.sleep(0.05)

    def close(self) -> None:
        """Stop reading."""
        if self._response is not None:
            stream = self._response.extensions.get("network_stream")
            sock = stream.get_extra_info("socket") if stream is not None else None
            if sock is not None:
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(5)


# ---------------------------------------------------------------------------------------------------------------
# setup


@contextmanager
def fresh_database(backend: str) -> Iterator[str]:
    """A new, empty database of the backend (SQLAlchemy URL), removed afterwards."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="saola-bench-mqtt-") as folder:
            yield f"sqlite:///{folder}/bench.db"
        return
    from benchmarks.rest_ingest import fresh_database as pg

    with pg() as url:
        yield url


def prepare(url: str, sensors: int) -> tuple[str, str, list[str]]:
    """Migrate, load units, create the indicators, a source and a national leader; (API key, source, units)."""
    from sqlalchemy import select

    from saola.config import Settings
    from saola.core.auth.context import system_actor
    from saola.core.auth.service import create_user
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
            for code in PHASES.values():
                create_indicator(session, actor=system, data=IndicatorCreate(
                    code=code, name_vi=f"Chỉ số {code}", domain="bench", min_value=None, max_value=None))
            units = list(session.scalars(select(Unit.code).where(Unit.level == "commune").order_by(Unit.code)
                                         .limit(sensors)))
            name = f"bench-mqtt-{uuid.uuid4().hex[:6]}"
            _, key = create_source(session, actor=system, name=name, scope="VN",
                                   allowed_writes=["observations:bench.*"])
            create_user(session, actor=system, username=USER, password=PASSWORD, role="leader", scope="VN")
        return key, name, units
    finally:
        engine.dispose()


def serve(url: str, log: Path, client_id: str, broker: str = BROKER) -> tuple[subprocess.Popen[bytes], str]:
    """Saola with its MQTT door, in its own process; returns the process and its base URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "SAOLA_DATABASE_URL": url, "SAOLA_SECRET_KEY": SECRET, "SAOLA_LOG_LEVEL": "WARNING",
           "SAOLA_RUN_JOBS": "false", "SAOLA_DATA_DIR": tempfile.gettempdir(), "SAOLA_MQTT_URL": broker,
           "SAOLA_MQTT_CLIENT_ID": client_id}
    command = [sys.executable, "-m", "uvicorn", "saola.app:create_app", "--factory", "--host", "127.0.0.1",
               "--port", str(port), "--log-level", "warning", "--no-access-log", "--http", "httptools",
               "--loop", "uvloop", "--timeout-graceful-shutdown", "3"]
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


def wipe_session(client_id: str, broker: str = BROKER) -> None:
    """Make the broker forget the door's persistent session."""
    import paho.mqtt.client as mqtt

    host, port = _broker(broker)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.connect(host, port, clean_start=True)
    client.disconnect()


def _mosquitto_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "mosquitto":
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def _phase(reader: StreamReader, code: str, count: int, rate: float, qos: int, key: str, source: str,
           units: list[str], start: datetime, quiet: float, server: int = 0, database: str = "",
           broker: tuple[str, int | None] = (BROKER, None)) -> dict[str, Any]:
    before = reader.count(code)
    others = {"saola": [server] if server else [], "broker": [broker[1]] if broker[1] else _mosquitto_pids()}
    if database:
        others["database"] = database_backends(database)
    cpu_before = {name: sum(process_cpu(p) for p in pids) for name, pids in others.items()}
    meter = CpuMeter().start()
    proc = run_publisher(key=key, source=source, indicator=code, units=units, count=count, rate=rate, qos=qos,
                         start=start, broker=broker[0])
    publisher_cpu = 0.0
    while proc.poll() is None:
        publisher_cpu = max(publisher_cpu, process_cpu(proc.pid))
        time.sleep(0.05)
    out, _ = proc.communicate(timeout=3600)
    timings = json.loads(out.strip().splitlines()[-1])
    complete = reader.wait(code, before + count, quiet)
    cpu = meter.stop()
    per_message = {name: (sum(process_cpu(p) for p in pids) - cpu_before[name]) / max(1, count) * 1e6
                   for name, pids in others.items()}
    per_message["publisher"] = (publisher_cpu + timings.get("client_cpu", 0.0)) / max(1, count) * 1e6
    with reader.lock:
        seen = reader.seen.get(code, 0) - before
        latencies = list(reader.latencies.get(code, [])[before:])
        last = reader.last_seen.get(code, timings["started"])
    span = max(1e-9, last - timings["started"])
    return {"count": count, "seen": seen, "lost": count - seen, "complete": complete,
            "publish_per_s": count / max(1e-9, timings["published"] - timings["started"]),
            "seen_per_s": seen / span, "seconds": span,
            "p50_ms": percentile(latencies, 0.5) * 1000, "p99_ms": percentile(latencies, 0.99) * 1000,
            "max_ms": max(latencies, default=0.0) * 1000, "cpu": cpu,
            "cpu_us_per_message": {k: round(v, 1) for k, v in per_message.items()}}


def run(messages: int = 300_000, rate: float = 5000.0, seconds: float = 20.0, sensors: int = 1000, qos: int = 1,
        backend: str = "postgresql", warmup: int = 2000, offered: float = 25_000.0,
        progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Both phases on a fresh database; returns the figures."""
    say = progress or (lambda _m: None)
    load_start = round(os.getloadavg()[0], 2)
    client_id = f"saola-bench-{uuid.uuid4().hex[:8]}"
    start = (datetime.now(UTC) - timedelta(days=3)).replace(minute=0, second=0, microsecond=0)
    with fresh_database(backend) as url, tempfile.TemporaryDirectory(prefix="saola-bench-mqtt-") as folder, \
            private_broker() as broker:
        say(f"{backend}: preparing a fresh database")
        key, source, units = prepare(url, sensors)
        process, base = serve(url, Path(folder) / "server.log", client_id, broker[0])
        reader = None
        try:
            token = httpx.post(f"{base}/api/auth/token", data={"username": USER, "password": PASSWORD}
                               ).json()["access_token"]
            reader = StreamReader(base, token)
            say(f"warm-up: {warmup:,} messages")
            time.sleep(1.0)  # the door subscribes in the background
            warm = _phase(reader, PHASES["warmup"], warmup, 5000, qos, key, source, units, start, 30, broker=broker)
            if not warm["complete"]:
                raise RuntimeError(f"warm-up incomplete: {warm}; server log: "
                                   f"{(Path(folder) / 'server.log').read_text(errors='replace')[-2000:]}")
            say(f"sustained: {messages:,} messages offered at {offered:,.0f}/s")
            database = "" if backend == "sqlite" else url.rsplit("/", 1)[1]
            sustained = _phase(reader, PHASES["sustained"], messages, offered, qos, key, source, units,
                               start + timedelta(hours=1), 20, process.pid, database, broker)
            say(f"latency: {rate:,.0f} messages/s for {seconds:.0f} s")
            paced = _phase(reader, PHASES["latency"], int(rate * seconds), rate, qos, key, source, units,
                           start + timedelta(hours=2), 20, process.pid, database, broker)
        finally:
            if reader is not None:
                reader.close()
            process.terminate()
            process.wait(30)
            wipe_session(client_id, broker[0])
        stored = _stored(url)
    return {"date": datetime.now(UTC).strftime("%Y-%m-%d"), "machine": machine(), "backend": backend,
            "load_start": load_start,
            "sensors": len(units), "qos": qos, "rate": rate, "offered": offered, "sustained": sustained,
            "latency": paced,
            "stored": stored, "mosquitto": _mosquitto_version()}


def _stored(url: str) -> int:
    if url.startswith("sqlite"):
        import sqlite3

        with sqlite3.connect(url.split("///", 1)[1]) as conn:
            return int(conn.execute("SELECT count(*) FROM observations").fetchone()[0])
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://", 1)) as conn:
        return int(conn.execute("SELECT count(*) FROM observations").fetchone()[0])  # type: ignore[index]


def _mosquitto_version() -> str:
    try:
        out = subprocess.run(["mosquitto", "-h"], capture_output=True, text=True, timeout=5).stdout
        return out.split("version", 1)[1].split()[0] if "version" in out else "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


# ---------------------------------------------------------------------------------------------------------------
# report


def table(report: dict[str, Any]) -> Table:
    """The figures as a rich table."""
    t = Table(title=f"MQTT -> stored -> /api/stream ({report['backend']}, QoS {report['qos']})")
    for col in ("phase", "messages", "publish/s", "seen on stream/s", "p50 ms", "p99 ms", "lost", "CPU busy"):
        t.add_column(col, justify="left" if col == "phase" else "right")
    for name in ("sustained", "latency"):
        r = report[name]
        t.add_row(name, f"{r['count']:,}", f"{r['publish_per_s']:,.0f}", f"{r['seen_per_s']:,.0f}",
                  f"{r['p50_ms']:.0f}", f"{r['p99_ms']:.0f}", f"{r['lost']:,}", f"{r['cpu']:.0%}")
    return t


def markdown(report: dict[str, Any], notes: str = "") -> str:
    """This benchmark's section of docs/benchmarks.md, markers included."""
    m, s, p = report["machine"], report["sustained"], report["latency"]
    verdict = (f"Targets: at least 20,000 messages/s sustained — {'met' if s['seen_per_s'] >= 20_000 else 'missed'} "
               f"({s['seen_per_s']:,.0f}); p99 publish-to-SSE latency at {report['rate']:,.0f} messages/s at most "
               f"200 ms — {'met' if p['p99_ms'] <= 200 and p['lost'] == 0 else 'missed'} ({p['p99_ms']:.0f} ms).")
    lines = [
        START,
        "## MQTT: publish -> stored -> seen on /api/stream",
        "",
        f"Measured {report['date']} on {m['nproc']} CPUs ({m['cpu']}), {m['ram_gb']} GB RAM, Python {m['python']}, "
        f"Mosquitto {report['mosquitto']} and {report['backend']} on the same machine; load average "
        f"{report['load_start']} at the start and {m['load']} at the end (the machine is shared with other work).",
        "",
        f"A publisher (`mosquitto_pub -l`, QoS {report['qos']}, 1,000 in flight, fed line by line by a Python process "
        "that stamps each line with the time it writes it) sends one reading per message to "
        f"`saola/<source>/observations` for {report['sensors']:,} communes; Saola (uvicorn, 1 worker, the MQTT door "
        "in the same process, as `saola serve --mqtt`) stores them through the kernel's ingest and a national "
        "user follows `/api/stream?topics=observations` from the benchmark process. Each reading's value is its "
        "publish time, so latency is measured per reading at the moment its SSE event is read. Everything — "
        "publisher, broker, Saola, the database and the stream reader — shares the 2 cores.",
        "",
        "| phase | messages | published/s | stored and seen on the stream/s | p50 latency | p99 latency | lost | "
        "machine CPU busy |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in ((f"sustained ({report['offered']:,.0f} messages/s offered)", s),
                    (f"{report['rate']:,.0f} messages/s", p)):
        lines.append(f"| {name} | {r['count']:,} | {r['publish_per_s']:,.0f} | {r['seen_per_s']:,.0f} | "
                     f"{r['p50_ms']:,.0f} ms | {r['p99_ms']:,.0f} ms | {r['lost']:,} | {r['cpu']:.0%} |")
    cpu = s["cpu_us_per_message"]
    lines += ["", "CPU per message in the sustained phase: " + ", ".join(f"{k} {v:.0f} µs" for k, v in cpu.items())
              + ".", "", verdict]
    if notes:
        lines += ["", notes]
    lines += ["", f"Reproduce: `python -m benchmarks.mqtt_stream --messages {s['count']} "
                  f"--offered {report['offered']:g} --rate {report['rate']:g} "
                  f"--seconds {p['count'] / report['rate']:g} --backend {report['backend']}`", END]
    return "\n".join(lines)


def write_docs(report: dict[str, Any], path: Path = DOCS, notes: str = "") -> None:
    """Replace this benchmark's section of docs/benchmarks.md, leaving the others as they are."""
    replace_section(path, START, END, markdown(report, notes))


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: run, print, write docs/benchmarks.md (or, with --publish, be the publisher process)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--publish"]:
        _publisher_main(argv[1:])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=300_000)
    parser.add_argument("--rate", type=float, default=5000.0)
    parser.add_argument("--offered", type=float, default=25_000.0, help="messages/s offered in the sustained phase")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--sensors", type=int, default=1000)
    parser.add_argument("--qos", type=int, default=1, choices=(0, 1))
    parser.add_argument("--backend", default="postgresql", choices=("postgresql", "sqlite"))
    parser.add_argument("--notes", default="", help="a paragraph added under the table")
    parser.add_argument("--no-docs", action="store_true", help="do not write docs/benchmarks.md")
    args = parser.parse_args(argv)
    console = Console()
    report = run(args.messages, args.rate, args.seconds, args.sensors, args.qos, args.backend,
                 offered=args.offered, progress=lambda m: console.log(m))
    console.print(table(report))
    console.print(f"CPU µs per message (sustained): {report['sustained']['cpu_us_per_message']}")
    if not args.no_docs:
        write_docs(report, notes=args.notes)
        console.print(f"written to {DOCS}")


if __name__ == "__main__":
    main()
