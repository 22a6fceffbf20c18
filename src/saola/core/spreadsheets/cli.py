"""`saola import indicators FILE`: indicator values and plan targets from XLSX or CSV, with a progress bar."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def indicators(
    file: Annotated[Path, typer.Argument(help="XLSX or CSV with the template's columns (Vietnamese or English)",
                                         exists=True, dir_okay=False, readable=True)],
) -> None:
    """Import indicator values and plan targets, all or nothing; refused rows are listed with their row numbers."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from saola.config import Settings
    from saola.core.auth.context import system_actor
    from saola.core.errors import DomainError
    from saola.core.spreadsheets.service import import_indicators
    from saola.db.engine import make_engine, make_session_factory, transaction

    console = Console()
    data = file.read_bytes()
    engine = make_engine(Settings())
    columns = (TextColumn("[bold]{task.description:<32}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
               TimeElapsedColumn())
    try:
        with Progress(*columns, console=console) as bar, transaction(make_session_factory(engine)) as session:
            task = bar.add_task(file.name, total=1.0)
            report = import_indicators(
                session, actor=system_actor("cli"), data=data, filename=file.name,
                progress=lambda label, fraction: bar.update(task, description=label, completed=fraction))
    except DomainError as exc:
        console.print(f"[red]error:[/red] {exc.message}")
        if exc.errors:
            table = Table("dòng / row", "cột / column", "lỗi / problem")
            for e in exc.errors[:50]:
                row = e.loc[1] if len(e.loc) > 1 else ""
                table.add_row(str(row), str(e.loc[2]) if len(e.loc) > 2 else "", e.msg)
            console.print(table)
            if len(exc.errors) > 50:
                console.print(f"... and {len(exc.errors) - 50} more")
        raise typer.Exit(2) from None
    finally:
        engine.dispose()
    console.print(f"[green]imported[/green] {report.rows} rows: {report.values_accepted} values stored "
                  f"({report.values_unchanged} already there), {report.targets} targets")


def register(app: typer.Typer) -> None:
    """Add `indicators` to the shared `import` group, creating the group when no pack has yet."""
    group = next((g.typer_instance for g in app.registered_groups if g.name == "import"), None)
    if group is None:
        group = typer.Typer(help="Import data files.", no_args_is_help=True)
        app.add_typer(group, name="import")
    if not any(c.name == "indicators" for c in group.registered_commands):
        group.command("indicators")(indicators)
