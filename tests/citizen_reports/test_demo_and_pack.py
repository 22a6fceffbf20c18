"""The demo thread of citizen reports (in a database of its own) and what the pack declares through the hooks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from saola.config import Settings
from saola.core.cases.models import Case
from saola.core.indicators.models import Indicator
from saola.core.observations.models import Observation
from saola.core.units.service import ensure_agency, load_official_units
from saola.db.engine import make_engine, make_session_factory, transaction
from saola.db.types import utcnow
from saola.domains.citizen_reports import demo, indicators, pack, service
from saola.domains.citizen_reports.models import ReportDetail
from saola.packs.context import PackContext


def test_demo_seed_tells_the_story(tmp_path: Path) -> None:
    from saola.cli import upgrade_database

    settings = Settings(data_dir=tmp_path, secret_key="x" * 40)
    upgrade_database(settings)
    engine = make_engine(settings)
    factory = make_session_factory(engine)
    with transaction(factory) as session:
        load_official_units(session)
        ensure_agency(session, unit_code="68", code="so-xd", name="Sở Xây dựng")
        ensure_agency(session, unit_code="68", code="so-nnmt", name="Sở Nông nghiệp và Môi trường")
        for ward in {p.unit_code for p in demo.PLACES}:
            ensure_agency(session, unit_code=ward, code="ubnd", name=f"UBND {ward}", kind="people_committee")
    context = PackContext(settings=settings, session_factory=factory, now=utcnow())
    progress: list[float] = []
    context.progress = lambda _label, fraction: progress.append(fraction)
    # How long this takes is shown by the demo's progress bar, never asserted here.
    written = demo.seed(context)
    assert written >= 60 and progress[-1] == 1.0
    with factory() as session:
        statuses = dict(session.execute(select(Case.status, func.count()).where(
            Case.case_type == "citizen_report").group_by(Case.status)).all())
        assert {"received", "forwarded", "in_progress", "resolved", "rated"} <= set(statuses)
        stats = service.statistics(session)
        assert stats["handled"] > 0 and 60 <= stats["on_time_rate"] < 100  # most on time, not all
        assert stats["overdue_open"] > 0 and stats["satisfaction"]["rated"] > 0
        escalated = session.scalar(select(func.count()).where(Case.case_type == "citizen_report",
                                                              Case.escalation_level > 0))
        assert escalated and escalated > 0
        assert len({c["code"] for c in stats["by_category"]}) >= 6
        assert len(stats["by_commune"]) == len({p.unit_code for p in demo.PLACES})
        linked = session.scalar(select(func.sum(ReportDetail.linked_count)))
        assert linked is not None
    # The wallboard indicators for the province, and a live tick adding a report.
    assert indicators.refresh(factory, now=context.now) >= 2
    with factory() as session:
        codes = set(session.scalars(select(Indicator.code).join(Observation, Observation.indicator_id == Indicator.id)
                                    .where(Indicator.code.like("cr.%"))))
        assert codes == {"cr.open_reports", "cr.on_time_rate"}
        before = session.scalar(select(func.count()).select_from(Case))
    context.now = utcnow()
    demo.tick(context)
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(Case)) == before + 1
    engine.dispose()


def test_pack_declarations(app: Any) -> None:
    layers = pack.saola_map_layers()
    assert [(x.key, x.url) for x in layers] == [("citizen_reports.reports", "/api/public/citizen-reports/map.geojson")]
    panel = pack.saola_dashboard_panels()[0]
    assert panel.kind == "kpi" and panel.indicator_codes == ("cr.open_reports", "cr.on_time_rate")
    registry = app.state.registry
    assert "citizen_reports" in registry.packs
    assert service.CONTACT in registry.permissions["operator"]
    assert service.CONTACT not in registry.permissions.get("agency_staff", [])
    assert service.CONFIGURE not in registry.permissions.get("agency_staff", [])
    assert {s.name for s in pack.saola_demo_simulators(None)} == {"citizen_reports.reports"}  # type: ignore[arg-type]
    assert {j.name for j in pack.saola_scheduled_jobs(app.state.settings)} == {"citizen_reports.indicators"}
