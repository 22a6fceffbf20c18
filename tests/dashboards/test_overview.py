"""The wallboard overview: KPI values, targets, status, trends and data age from rollups and latest values."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from saola.core.auth.context import Actor, system_actor
from saola.core.cases.service import open_case
from saola.core.dashboards import service
from saola.core.errors import Forbidden, NotFound
from saola.core.indicators.schemas import IndicatorCreate, TargetIn
from saola.core.indicators.service import create_indicator, upsert_targets
from saola.core.observations import service as observations
from saola.db.engine import transaction
from saola.packs.definitions import DashboardPanel
from tests.conftest import unique

PROVINCE = "68"
WARD = "24781"  # Phường Xuân Hương - Đà Lạt
WARD2 = "24787"  # Phường Cam Ly - Đà Lạt
NOW = datetime(2026, 11, 20, 5, 30, tzinfo=UTC)


def indicator(session_factory: sessionmaker[Session], **fields: Any) -> str:
    """A fresh indicator only this test writes to."""
    code = f"dash.{unique('k')}"
    with transaction(session_factory) as session:
        create_indicator(session, actor=system_actor("test"), data=IndicatorCreate(
            code=code, name_vi="Chỉ số thử", name_en="Test KPI", domain="test", **fields))
    return code


def write(session_factory: sessionmaker[Session], rows: list[tuple[str, str, datetime, float]]) -> None:
    """Readings (indicator, unit, ts, value) through the kernel's ingest."""
    items = [{"indicator": c, "unit": u, "ts": ts.isoformat(), "value": v} for c, u, ts, v in rows]
    with transaction(session_factory) as session:
        observations.ingest(session, actor=system_actor("test"), items=items, now=NOW)


def user(role: str = "leader", scope: str = PROVINCE, permissions: tuple[str, ...] = ("observations:read",)) -> Actor:
    """An actor as the API would build it."""
    path = {"68": "VN.68", WARD: f"VN.68.{WARD}", WARD2: f"VN.68.{WARD2}", "VN": "VN"}[scope]
    return Actor(kind="user", id=None, name="t", role=role, scope_code=scope, scope_path=path,
                 permissions=frozenset(permissions))


def run(session_factory: sessionmaker[Session], codes: list[str], actor: Actor, unit: str | None = None):  # type: ignore[no-untyped-def]
    panel = DashboardPanel(key="p", title_vi="Thử", title_en="Test", domain="test", indicator_codes=tuple(codes))
    with session_factory() as session:
        return service.overview(session, actor=actor, panels=[panel], layers=[], unit=unit, now=NOW)


@pytest.fixture(scope="module")
def live(session_factory: sessionmaker[Session]) -> dict[str, str]:
    """A realtime 'avg' indicator read in two wards over the last hours, with an older stale one."""
    aqi = indicator(session_factory, aggregation="avg", direction="lower_is_better", periodicity="realtime",
                    thresholds={"warning": 100, "critical": 150})
    rows = []
    for h in range(6):
        ts = NOW - timedelta(hours=5 - h, minutes=10)
        rows += [(aqi, WARD, ts, 40.0 + 10 * h), (aqi, WARD2, ts, 100.0 + 20 * h)]
    write(session_factory, rows)
    old = indicator(session_factory, aggregation="avg", periodicity="realtime")
    write(session_factory, [(old, WARD, NOW - timedelta(hours=9), 1.0)])
    return {"aqi": aqi, "old": old}


def test_subtree_value_trend_age_and_thresholds(session_factory: sessionmaker[Session], live: dict[str, str]) -> None:
    """The province value averages its wards' latest readings; the trend has one point per hour."""
    kpi = run(session_factory, [live["aqi"]], user()).panels[0].kpis[0]
    assert kpi.source == "subtree" and kpi.subjects == 2
    assert kpi.value == pytest.approx((90.0 + 200.0) / 2)
    assert kpi.age_seconds == pytest.approx(600.0)
    assert kpi.stale is False
    assert kpi.status == "warning"  # 145 is past the warning level (100) but short of critical (150)
    assert [p.value for p in kpi.trend] == pytest.approx([70.0, 85.0, 100.0, 115.0, 130.0, 145.0])


def test_drill_down_to_a_commune(session_factory: sessionmaker[Session], live: dict[str, str]) -> None:
    """The same tile for one ward shows that ward's value only, and the ward lists its province as ancestor."""
    result = run(session_factory, [live["aqi"]], user(), unit=WARD2)
    kpi = result.panels[0].kpis[0]
    assert kpi.value == pytest.approx(200.0) and kpi.subjects == 1 and kpi.status == "critical"
    assert result.panels[0].status == "critical"
    assert [u.code for u in result.ancestors] == [PROVINCE]
    assert result.unit.code == WARD2 and result.children == []
    province = run(session_factory, [live["aqi"]], user())
    assert WARD in {c.code for c in province.children} and WARD2 in {c.code for c in province.children}


def test_stale_value(session_factory: sessionmaker[Session], live: dict[str, str]) -> None:
    """A realtime value nine hours old is flagged stale."""
    kpi = run(session_factory, [live["old"]], user()).panels[0].kpis[0]
    assert kpi.stale is True and kpi.value == 1.0


def test_unit_value_against_target(session_factory: sessionmaker[Session]) -> None:
    """A unit's own monthly figure beats its subtree and is coloured by the plan target of its period."""
    growth = indicator(session_factory, aggregation="avg", direction="higher_is_better", periodicity="month")
    months = [datetime(2026, m, 1, tzinfo=UTC) - timedelta(hours=7) for m in (8, 9, 10, 11)]
    write(session_factory, [(growth, PROVINCE, ts, 6.0 + i) for i, ts in enumerate(months)]
          + [(growth, WARD, months[-1], 99.0)])
    with transaction(session_factory) as session:
        upsert_targets(session, actor=system_actor("test"), code=growth,
                       items=[TargetIn(unit=PROVINCE, period="2026", target_value=10.0),
                              TargetIn(unit=PROVINCE, period="2026-11", target_value=8.5)])
    kpi = run(session_factory, [growth], user()).panels[0].kpis[0]
    assert kpi.source == "unit" and kpi.value == 9.0
    assert kpi.target == 8.5 and kpi.target_period == "2026-11"  # the month is more specific than the year
    assert kpi.status == "good" and kpi.progress == pytest.approx(9.0 / 8.5, rel=1e-3)
    assert [p.value for p in kpi.trend] == [6.0, 7.0, 8.0, 9.0]
    with transaction(session_factory) as session:
        upsert_targets(session, actor=system_actor("test"), code=growth,
                       items=[TargetIn(unit=PROVINCE, period="2026-11", target_value=12.0)])
    assert run(session_factory, [growth], user()).panels[0].kpis[0].status == "critical"  # 9 / 12 < 90 %


def test_no_data_and_unknown_codes(session_factory: sessionmaker[Session]) -> None:
    """An indicator without readings shows no value; a code not in the catalog is left out, not an error."""
    empty = indicator(session_factory)
    panel = run(session_factory, [empty, "dash.not_declared"], user()).panels[0]
    assert [k.indicator for k in panel.kpis] == [empty]
    assert panel.kpis[0].value is None and panel.kpis[0].source == "none" and panel.status == "none"


def test_scope_is_enforced(session_factory: sessionmaker[Session], live: dict[str, str]) -> None:
    """A ward's staff cannot open the province or a neighbouring ward, and sees only its own ward by default."""
    ward_user = user("agency_staff", WARD)
    for other in (PROVINCE, WARD2, "79", "VN"):
        with pytest.raises(NotFound):
            run(session_factory, [live["aqi"]], ward_user, unit=other)
    mine = run(session_factory, [live["aqi"]], ward_user)
    assert mine.unit.code == WARD and mine.panels[0].kpis[0].value == pytest.approx(90.0)
    assert mine.ancestors == []  # the province lies above the caller's scope
    with pytest.raises(Forbidden):
        run(session_factory, [live["aqi"]], user(permissions=("alerts:read",)))


@pytest.fixture
def statements(session_factory: sessionmaker[Session]) -> Iterator[list[str]]:
    """Every SQL statement sent while the fixture is active."""
    seen: list[str] = []
    engine = session_factory.kw["bind"]

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    yield seen
    event.remove(engine, "before_cursor_execute", record)


def test_reads_rollups_and_latest_never_raw(session_factory: sessionmaker[Session], live: dict[str, str],
                                            statements: list[str]) -> None:
    """The overview touches observation_latest and the rollups, never the raw observations table."""
    run(session_factory, [live["aqi"], live["old"]], user())
    text = " ".join(statements).lower()
    assert "observation_latest" in text and "observation_rollups_hourly" in text
    assert "from observations" not in text and "join observations" not in text


def test_api_overview_and_errors(client: TestClient, make_user: Any) -> None:
    """The caller's unit by default; 404 outside the scope, 422 for a malformed code, 401 anonymous."""
    leader = make_user("leader", PROVINCE)
    r = client.get("/api/dashboards/overview", headers=leader)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["unit"]["code"] == PROVINCE
    keys = {p["key"] for p in body["panels"]}
    assert {"socioeconomic", "land"} <= keys  # contributed by packs through saola_dashboard_panels
    assert {"land.parcels", "core.incidents"} <= {m["key"] for m in body["layers"]}
    assert client.get("/api/dashboards/overview", params={"unit": WARD}, headers=leader).status_code == 200
    staff = make_user("agency_staff", WARD)
    assert client.get("/api/dashboards/overview", params={"unit": PROVINCE}, headers=staff).status_code == 404
    bad = client.get("/api/dashboards/overview", params={"unit": "68;drop"}, headers=leader)
    assert bad.status_code == 422 and "unit" in bad.text
    assert client.get("/api/dashboards/overview").status_code == 401
    assert client.get("/api/dashboards/incidents.geojson").status_code == 401


def test_incidents_layer_scope(client: TestClient, make_user: Any, session_factory: sessionmaker[Session]) -> None:
    """Open incidents with a place appear on the layer for those who may see them, not for other wards."""
    operator = make_user("operator", PROVINCE)
    title = unique("Sự cố ")
    with transaction(session_factory) as session:
        open_case(session, actor=system_actor("test"), case_type="incident", title=title, unit_code=WARD,
                  data={"lon": 108.44, "lat": 11.94})
        open_case(session, actor=system_actor("test"), case_type="incident", title=title + " (no place)",
                  unit_code=WARD)
    layer = client.get("/api/dashboards/incidents.geojson", headers=operator).json()
    mine = [f for f in layer["features"] if f["properties"]["title"].startswith(title)]
    assert len(mine) == 1 and mine[0]["geometry"]["coordinates"] == [108.44, 11.94]
    other = make_user("agency_staff", WARD2)
    seen = client.get("/api/dashboards/incidents.geojson", headers=other).json()["features"]
    assert title not in {f["properties"]["title"] for f in seen}
    inside = client.get("/api/dashboards/incidents.geojson", params={"unit": WARD}, headers=operator).json()
    assert title in {f["properties"]["title"] for f in inside["features"]}


def test_trend_keeps_closed_hours_and_reads_the_current_one(session_factory: sessionmaker[Session]) -> None:
    """A second overview reuses the closed hours of the trend but sees a reading that lands in the current hour."""
    code = indicator(session_factory, aggregation="avg", periodicity="realtime")
    write(session_factory, [(code, WARD, NOW - timedelta(hours=h, minutes=10), 10.0 * h) for h in (3, 2, 1)])
    first = run(session_factory, [code], user(), unit=WARD).panels[0].kpis[0]
    assert [p.value for p in first.trend] == [30.0, 20.0, 10.0]
    write(session_factory, [(code, WARD, NOW - timedelta(minutes=5), 99.0)])  # 05:25, the current hour
    second = run(session_factory, [code], user(), unit=WARD).panels[0].kpis[0]
    assert [p.value for p in second.trend] == [30.0, 20.0, 10.0, 99.0]
    assert second.value == 99.0
