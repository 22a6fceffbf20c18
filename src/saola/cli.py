"""The `saola` command line (Typer): database, units, users, sources, serve and demo."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from saola.config import InsecureSettingsError, Settings
from saola.core.auth.context import system_actor
from saola.core.errors import DomainError
from saola.db.engine import make_engine, make_session_factory, transaction

if TYPE_CHECKING:
    from sqlalchemy import Engine

app = typer.Typer(help="Saola: Trung tâm giám sát, điều hành (Intelligent Operations Center).",
                  no_args_is_help=True, pretty_exceptions_enable=False)
db_app = typer.Typer(help="Database migrations.", no_args_is_help=True)
units_app = typer.Typer(help="The administrative unit tree.", no_args_is_help=True)
users_app = typer.Typer(help="Users, roles and scopes.", no_args_is_help=True)
sources_app = typer.Typer(help="Source systems and their API keys.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(units_app, name="units")
app.add_typer(users_app, name="users")
app.add_typer(sources_app, name="sources")

console = Console()


def progress_bar() -> Progress:
    """The progress bar style every long CLI task uses."""
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console)


def _settings(data_dir: Path | None = None, **overrides: object) -> Settings:
    values: dict[str, object] = {k: v for k, v in overrides.items() if v is not None}
    if data_dir is not None:
        values["data_dir"] = data_dir
    return Settings(**values)  # type: ignore[arg-type]


def _fail(message: str) -> None:
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(2)


def upgrade_database(settings: Settings) -> None:
    """Run migrations, then bring declared indicators into the catalog."""
    from saola.core.indicators.service import sync_declared
    from saola.db.migrate import upgrade
    from saola.packs.manager import get_registry

    upgrade(settings.url)
    engine = make_engine(settings)
    try:
        with transaction(make_session_factory(engine)) as session:
            sync_declared(session, registry=get_registry(tuple(settings.disabled_packs)))
        install_rules(settings, engine)
    finally:
        engine.dispose()


def install_rules(settings: Settings, engine: Engine) -> int:
    """Install the rules packs propose; run again once the unit tree is there (rules are scoped to units)."""
    from sqlalchemy import select

    from saola.core.rules.service import install_default_rules
    from saola.core.units.models import Unit
    from saola.packs.manager import get_plugin_manager, get_registry

    disabled = tuple(settings.disabled_packs)
    with transaction(make_session_factory(engine)) as session:
        if session.scalar(select(Unit.code).limit(1)) is None:
            return 0  # `saola units load` installs them once there are units to scope them to
        return install_default_rules(session, actor=system_actor("upgrade"), registry=get_registry(disabled),
                                     plugin_manager=get_plugin_manager(disabled))


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply every migration (SQLite or PostgreSQL, from SAOLA_DATABASE_URL)."""
    settings = _settings()
    with console.status("Applying migrations..."):
        upgrade_database(settings)
    from saola.db.migrate import head_revisions

    console.print(f"[green]database at revision {', '.join(sorted(head_revisions()))}[/green]")


def load_units(settings: Settings) -> dict[str, int]:
    """Load the official unit tree with a progress bar."""
    from saola.core.units.service import load_official_units

    engine = make_engine(settings)
    try:
        with progress_bar() as bar, transaction(make_session_factory(engine)) as session:
            task = bar.add_task("Loading units", total=None)

            def tick(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            result = load_official_units(session, progress=tick)
        install_rules(settings, engine)  # default rules scoped to units that did not exist before
        return result
    finally:
        engine.dispose()


@units_app.command("load")
def units_load() -> None:
    """Load the nation, 34 provinces and 3,321 communes from the vietnam-provinces package (idempotent)."""
    result = load_units(_settings())
    console.print(f"units: {result['total']} ({result['province']} provinces, {result['commune']} communes), "
                  f"{result['created']} new")


@users_app.command("create")
def users_create(
    username: Annotated[str, typer.Option(help="Login name")],
    password: Annotated[str, typer.Option(help="At least 8 characters")],
    role: Annotated[str, typer.Option(help="admin, leader, operator, agency_staff, integrator or viewer")],
    scope: Annotated[str, typer.Option(help="Unit code whose subtree the user sees (VN, 68, ...)")],
    full_name: Annotated[str, typer.Option(help="Display name")] = "",
) -> None:
    """Create a user with a role and a scope."""
    from saola.core.auth.schemas import UserCreate
    from saola.core.auth.service import create_user

    try:
        UserCreate(username=username, password=password, role=role, scope=scope)  # type: ignore[arg-type]
    except Exception as exc:
        _fail(str(exc))
    engine = make_engine(_settings())
    try:
        with transaction(make_session_factory(engine)) as session:
            user = create_user(session, actor=system_actor("cli"), username=username, password=password,
                               role=role, scope=scope, full_name=full_name)
            console.print(f"created user {user.username} ({user.role}, scope {user.scope_code})")
    except DomainError as exc:
        _fail(exc.message)
    finally:
        engine.dispose()


@sources_app.command("create")
def sources_create(
    name: Annotated[str, typer.Argument(help="Source name, lower-case")],
    scope: Annotated[str, typer.Option(help="Unit code whose subtree the source may write")],
    allow: Annotated[list[str] | None, typer.Option(help="kind:pattern it may write, repeatable")] = None,
    description: Annotated[str, typer.Option()] = "",
) -> None:
    """Register a source system and print its API key (shown this once)."""
    from saola.core.sources.service import create_source

    engine = make_engine(_settings())
    try:
        with transaction(make_session_factory(engine)) as session:
            source, key = create_source(session, actor=system_actor("cli"), name=name, scope=scope,
                                        description=description, allowed_writes=allow or None)
            console.print(f"created source {source.name} (id {source.id}, scope {source.scope_code})")
            console.print(f"API key (shown once, send it as X-API-Key): [bold]{key}[/bold]")
    except DomainError as exc:
        _fail(exc.message)
    finally:
        engine.dispose()


@app.command()
def serve(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    mqtt: Annotated[str | None, typer.Option(
        help="Subscribe to this MQTT broker, e.g. mqtt://127.0.0.1:1883 (default: SAOLA_MQTT_URL)")] = None,
    workers: Annotated[int, typer.Option(min=1, max=64, help=(
        "Worker processes (one per core is usual); more than one needs a shared bus, SAOLA_BUS_URL=redis://..."
    ))] = 1,
) -> None:
    """Serve the API without demo data or simulators (needs a real SAOLA_SECRET_KEY)."""
    import uvicorn

    from saola.app import create_app
    from saola.logging import configure_logging

    settings = _settings(mqtt_url=mqtt)
    try:
        settings.check_secure()
    except InsecureSettingsError as exc:
        _fail(str(exc))
    configure_logging(settings.log_level, settings.log_json)
    # Open live streams (SSE) would otherwise hold the shutdown until every browser leaves.
    options: dict[str, Any] = {"host": host, "port": port, "log_level": "warning", "timeout_graceful_shutdown": 5}
    if workers == 1:
        uvicorn.run(create_app(settings), **options)
        return
    # Each worker builds its app from the environment; every one must see every write (the rules, the live stream).
    if not settings.bus_url or settings.bus_url in ("memory", "memory://"):
        _fail("several workers share one bus: set SAOLA_BUS_URL=redis://127.0.0.1:6379/0 (see docs/ingestion.md)")
    if settings.mqtt_url:
        _fail("the MQTT door runs in one process: serve it apart (`saola serve --mqtt URL`) beside the workers, "
              "and unset SAOLA_MQTT_URL for them")
    uvicorn.run("saola.app:create_app", factory=True, workers=workers, **options)


@app.command()
def demo(
    port: Annotated[int, typer.Option(help="Port to serve on")] = 8000,
    data_dir: Annotated[Path | None, typer.Option(help="Folder for the demo database")] = None,
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    seed_only: Annotated[bool, typer.Option(help="Create and seed the data, then exit")] = False,
    mqtt: Annotated[str | None, typer.Option(
        help="MQTT broker to subscribe to; default: 127.0.0.1:1883 when a broker answers there, 'off' for none")]
    = None,
) -> None:
    """Create (or reuse) the demo database for Lâm Đồng, run live simulated sources and serve the app."""
    from saola.demo.runner import run_demo

    run_demo(_settings(data_dir, demo_mode=True), host=host, port=port, seed_only=seed_only, console=console,
             mqtt=mqtt)


def main() -> None:
    """Entry point of the `saola` console script; packs may add commands first."""
    from saola.packs.manager import get_plugin_manager

    get_plugin_manager(()).hook.saola_cli(app=app)
    app()
