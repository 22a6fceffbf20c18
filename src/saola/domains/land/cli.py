"""`saola import parcels FILE`: import a cadastral file with a progress bar, one transaction per file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from saola.core.errors import DomainError


def parcels(
    file: Annotated[Path, typer.Argument(help="GeoJSON, GeoPackage or Shapefile (.shp, or a .zip holding one)")],
    crs: Annotated[str | None, typer.Option(
        help="Coordinates of the file: EPSG:4326, VN2000:107.75 (central meridian), EPSG:xxxx or a PROJ string; "
             "default: what the file declares")] = None,
    mapping: Annotated[Path | None, typer.Option(help='JSON file {"sheet_no": "SoTo", "parcel_no": "SoThua", ...}')]
    = None,
    field: Annotated[list[str] | None, typer.Option(help="ours=theirs, repeatable: --field sheet_no=SoTo")] = None,
    commune: Annotated[str | None, typer.Option(help="Commune code for rows without one")] = None,
    layer: Annotated[str | None, typer.Option(help="Layer of a GeoPackage with several")] = None,
    strict: Annotated[bool, typer.Option(help="Import nothing when any row is rejected")] = False,
) -> None:
    """Import cadastral parcels: reproject to WGS84, repair or reject bad polygons, update without duplicates."""
    from saola.cli import console
    from saola.config import Settings
    from saola.core.auth.context import system_actor
    from saola.db.engine import make_engine, make_session_factory, transaction
    from saola.domains.land.importer import import_parcels

    fields: dict[str, str] = {}
    try:
        if mapping is not None:
            fields.update(json.loads(mapping.read_text(encoding="utf-8")))
    except (OSError, ValueError) as exc:
        console.print(f"[red]error:[/red] cannot read the mapping file {mapping}: {exc}")
        raise typer.Exit(2) from None
    for item in field or []:
        ours, sep, theirs = item.partition("=")
        if not sep or not ours.strip() or not theirs.strip():
            console.print(f"[red]error:[/red] --field expects ours=theirs, got {item!r}")
            raise typer.Exit(2)
        fields[ours.strip()] = theirs.strip()
    engine = make_engine(Settings())
    columns = (TextColumn("[bold]{task.description:<24}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
               TimeElapsedColumn())
    try:
        with Progress(*columns, console=console) as bar, transaction(make_session_factory(engine)) as session:
            task = bar.add_task(f"{file.name}", total=1.0)
            report = import_parcels(
                session, actor=system_actor("cli"), path=file, crs=crs, mapping=fields or None, commune=commune,
                layer=layer, strict=strict,
                progress=lambda label, fraction: bar.update(task, description=label, completed=fraction))
    except DomainError as exc:
        console.print(f"[red]error:[/red] {exc.message}")
        for e in exc.errors[:20]:
            console.print(f"  {'.'.join(str(p) for p in e.loc)}: {e.msg}")
        raise typer.Exit(2) from None
    finally:
        engine.dispose()
    table = Table(title=f"{report.file} ({report.crs})")
    for column in ("rows", "created", "updated", "repaired", "rejected", "seconds", "parcels/s"):
        table.add_column(column, justify="right")
    rate = report.imported / report.seconds if report.seconds else 0.0
    table.add_row(str(report.rows), str(report.created), str(report.updated), str(len(report.repaired)),
                  str(len(report.rejected)), f"{report.seconds:.2f}", f"{rate:,.0f}")
    console.print(table)
    for title, issues in (("repaired", report.repaired), ("rejected", report.rejected)):
        for issue in issues[:20]:
            console.print(f"  {title} row {issue.row} ({issue.key or '?'}): {issue.reason}")
        if len(issues) > 20:
            console.print(f"  ... and {len(issues) - 20} more {title}")


def register(app: typer.Typer) -> None:
    """Add `parcels` to the shared `import` group, creating the group when no pack has yet."""
    group = next((g.typer_instance for g in app.registered_groups if g.name == "import"), None)
    if group is None:
        group = typer.Typer(help="Import data files.", no_args_is_help=True)
        app.add_typer(group, name="import")
    if not any(c.name == "parcels" for c in group.registered_commands):
        group.command("parcels")(parcels)
