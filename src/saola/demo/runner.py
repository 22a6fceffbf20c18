"""Create or reuse the demo database, run the packs' simulators, and serve the app."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from saola import __version__
from saola.config import Settings
from saola.core.auth.context import system_actor
from saola.core.auth.models import User
from saola.core.auth.service import create_user
from saola.core.sources.models import Source
from saola.core.sources.service import create_source
from saola.core.units.models import Unit
from saola.core.units.service import ensure_agency, load_official_units
from saola.db.engine import make_engine, make_session_factory, transaction
from saola.db.types import utcnow
from saola.demo.operations import seed_operations
from saola.demo.people import DEMO_PROVINCE, DEMO_USERS, PROVINCE_AGENCIES
from saola.packs.context import PackContext
from saola.packs.definitions import Simulator
from saola.packs.manager import get_plugin_manager, get_registry

log = logging.getLogger(__name__)
MARKER = "demo-seeded.json"


def _marker(settings: Settings) -> Path:
    return settings.data_dir / MARKER


def is_seeded(settings: Settings) -> bool:
    """True when a previous start finished seeding this data folder."""
    return _marker(settings).exists()


def _reset_unfinished(settings: Settings) -> None:
    # A seed interrupted half-way leaves an unknown state; the demo database is disposable, so start over.
    if settings.is_sqlite and not is_seeded(settings):
        for suffix in ("", "-wal", "-shm"):
            path = Path(settings.url.split("///", 1)[1] + suffix)
            if path.exists():
                path.unlink()


def _seed_people(session: Session) -> None:
    actor = system_actor("demo")
    agencies = {code: ensure_agency(session, unit_code=DEMO_PROVINCE, code=code, name=vi, name_en=en, kind=kind)
                for code, vi, en, kind in PROVINCE_AGENCIES}
    communes = session.scalars(select(Unit).where(Unit.parent_code == DEMO_PROVINCE)).all()
    for commune in communes:
        ensure_agency(session, unit_code=commune.code, code="ubnd", name=f"UBND {commune.name}",
                      name_en=f"People's Committee of {commune.name_en}", kind="people_committee")
    for person in DEMO_USERS:
        if session.scalar(select(User.id).where(User.username == person.username)):
            continue
        agency = agencies.get(person.agency_code or "")
        create_user(session, actor=actor, username=person.username, password=person.password, role=person.role,
                    scope=person.scope, full_name=person.full_name, agency_id=agency.id if agency else None,
                    is_demo=True)


def _demo_sources(session: Session, slugs: list[str]) -> dict[str, int]:
    ids: dict[str, int] = {}
    for slug in slugs:
        name = f"demo-{slug.replace('_', '-')}"
        source = session.scalar(select(Source).where(Source.name == name))
        if source is None:
            source, _key = create_source(session, actor=system_actor("demo"), name=name, scope=DEMO_PROVINCE,
                                         description=f"Nguồn mô phỏng của gói {slug} (demo)", is_demo=True)
        ids[slug] = source.id
    return ids


def build_context(settings: Settings, factory: sessionmaker[Session]) -> PackContext:
    """The context packs get for seeding and simulating, with one demo source per pack."""
    registry = get_registry(tuple(settings.disabled_packs))
    slugs = [s for s in registry.packs if s != "core"]
    with transaction(factory) as session:
        source_ids = _demo_sources(session, slugs)
    return PackContext(settings=settings, session_factory=factory, now=utcnow(), province_code=DEMO_PROVINCE,
                       source_ids=source_ids)


def seed(settings: Settings, console: Console) -> float:
    """Create the demo database from nothing, with progress bars; returns the seconds it took."""
    from saola.cli import install_rules, upgrade_database

    started = time.perf_counter()
    _reset_unfinished(settings)
    pm = get_plugin_manager(tuple(settings.disabled_packs))
    columns = (TextColumn("[bold]{task.description:<36}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
               TimeElapsedColumn())
    with Progress(*columns, console=console) as bar:
        step = bar.add_task("Cơ sở dữ liệu / database", total=1)
        upgrade_database(settings)
        bar.update(step, completed=1)
        engine = make_engine(settings)
        factory = make_session_factory(engine)
        step = bar.add_task("Đơn vị hành chính / units", total=1)
        with transaction(factory) as session:
            load_official_units(session, progress=lambda done, total: bar.update(step, completed=done / total))
        install_rules(settings, engine)  # the packs' default rules are scoped to units, loaded just now
        step = bar.add_task("Cơ quan, người dùng / agencies, users", total=1)
        with transaction(factory) as session:
            _seed_people(session)
        bar.update(step, completed=1)
        context = build_context(settings, factory)
        tasks: dict[str, int] = {}

        def progress(label: str, fraction: float) -> None:
            if label not in tasks:
                tasks[label] = bar.add_task(label, total=1)
            bar.update(tasks[label], completed=min(max(fraction, 0.0), 1.0))

        context.progress = progress
        pm.hook.saola_demo_seed(context=context)
        step = bar.add_task("Điều hành / operations", total=1)
        seed_operations(context)  # after the packs: the story is the kernel's, told with the packs' data in place
        bar.update(step, completed=1)
        engine.dispose()
    elapsed = time.perf_counter() - started
    _marker(settings).write_text(json.dumps({"version": __version__, "seeded_at": context.now.isoformat(),
                                             "seconds": round(elapsed, 1)}), encoding="utf-8")
    return elapsed


class SimulatorLoop(threading.Thread):
    """Runs each simulator on its interval; a failing simulator is logged and retried, never fatal."""

    def __init__(self, context: PackContext, simulators: list[Simulator]) -> None:
        super().__init__(name="saola-simulators", daemon=True)
        self.context = context
        self.simulators = simulators
        self.stop_event = threading.Event()

    def run(self) -> None:
        """Tick every simulator when due until stopped."""
        due = {s.name: 0.0 for s in self.simulators}
        while not self.stop_event.is_set():
            now = time.monotonic()
            for sim in self.simulators:
                if now < due[sim.name]:
                    continue
                due[sim.name] = now + sim.interval_seconds
                self.context.now = utcnow()
                try:
                    sim.tick(self.context)
                except Exception:
                    log.exception("demo simulator %s failed; it will try again", sim.name)
            self.stop_event.wait(0.2)

    def stop(self) -> None:
        """Ask the loop to finish."""
        self.stop_event.set()


def start_simulators(settings: Settings, factory: sessionmaker[Session]) -> SimulatorLoop:
    """Start the live simulated sources of every loaded pack."""
    pm = get_plugin_manager(tuple(settings.disabled_packs))
    context = build_context(settings, factory)
    simulators = [s for group in pm.hook.saola_demo_simulators(context=context) for s in group or []]
    loop = SimulatorLoop(context, simulators)
    loop.start()
    return loop


def _print_welcome(console: Console, host: str, port: int, settings: Settings) -> None:
    table = Table(title="Tài khoản demo / demo accounts (chỉ dùng trong chế độ demo)")
    for column in ("username", "password", "role", "scope"):
        table.add_column(column)
    for person in DEMO_USERS:
        table.add_row(person.username, person.password, person.role, person.scope)
    console.print(table)
    console.print(f"Saola {__version__} — dữ liệu: {settings.data_dir.resolve()}")
    console.print(f"API: http://{host}:{port}/docs   health: http://{host}:{port}/api/health")


DEMO_MQTT_URL = "mqtt://127.0.0.1:1883"


def broker_answers(url: str = DEMO_MQTT_URL, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections at the MQTT URL's host and port."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 1883), timeout=timeout):
            return True
    except OSError:
        return False


def _demo_mqtt(settings: Settings, mqtt: str | None, console: Console) -> None:
    """Turn the MQTT door on: the URL given, SAOLA_MQTT_URL, or the local broker when it answers ('off': none)."""
    if mqtt is not None and mqtt.lower() in ("off", "no", "none", ""):
        settings.mqtt_url = None
        return
    url = mqtt or settings.mqtt_url or (DEMO_MQTT_URL if broker_answers() else None)
    settings.mqtt_url = url
    if url:
        console.print(f"MQTT: đăng ký nhận saola/# tại / subscribed to saola/# at {url}")


def run_demo(settings: Settings, *, host: str, port: int, seed_only: bool, console: Console,
             mqtt: str | None = None) -> None:
    """Seed on first start (reuse afterwards), start the simulators and serve on host:port."""
    import uvicorn

    from saola.app import create_app
    from saola.logging import configure_logging

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if is_seeded(settings):
        from saola.cli import upgrade_database

        upgrade_database(settings)  # a newer Saola may bring migrations; the data stays
        console.print("[green]Dùng lại dữ liệu demo có sẵn / reusing the existing demo data[/green]")
    else:
        elapsed = seed(settings, console)
        console.print(f"[green]Đã tạo dữ liệu demo trong {elapsed:.1f} s / demo data created[/green]")
    if seed_only:
        return
    configure_logging("WARNING", settings.log_json)
    _demo_mqtt(settings, mqtt, console)
    app = create_app(settings)
    loop = start_simulators(settings, app.state.session_factory)
    _print_welcome(console, host, port, settings)
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=5)
    finally:
        loop.stop()
