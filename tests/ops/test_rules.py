"""Rules on the live stream: threshold (hysteresis, minimum duration), rate of change, silence, event count, plan
target, one open alert per rule and subject, flapping, scope, and the rules API with its bad inputs.

Readings carry explicit timestamps: the engine decides on data time, so nothing here sleeps.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pluggy
import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from saola.bus import Message
from saola.core.alerts import service as alerts_service
from saola.core.alerts.models import Alert, AlertHistory
from saola.core.auth.context import system_actor
from saola.core.events.service import emit
from saola.core.indicators.schemas import TargetIn
from saola.core.indicators.service import upsert_targets
from saola.core.observations import service as observations
from saola.core.rules.engine import RulesEngine, wait_idle
from saola.core.rules.models import Rule
from saola.core.rules.service import install_default_rules
from saola.db.engine import transaction
from saola.packs import hookimpl, hookspecs
from saola.packs.definitions import RuleDefinition
from saola.packs.manager import Registry
from tests.conftest import unique
from tests.ops import test_rules_helpers as shared
from tests.ops.test_rules_helpers import (
    ENTITY_TYPE,
    EVENT_TYPE,
    OTHER,
    T0,
    WARD,
    WARD2,
    Heard,
    alerts_of,
    feed,
    make_entity,
    make_indicator,
    make_rule,
    open_alerts,
)

declared_types = shared.declared_types
engine = shared.engine
headers_for = shared.headers_for


# ---------------------------------------------------------------------------------------------------------------
# threshold


def test_threshold_with_hysteresis_and_minimum_duration(session_factory, engine, declared_types) -> None:
    code = make_indicator(session_factory)
    rule_id = make_rule(session_factory, declared_types, kind="threshold",
                        params={"indicator": code, "threshold": 100, "clear_threshold": 80,
                                "min_duration_seconds": 300})
    with Heard("alerts.*") as heard:
        feed(session_factory, code, [(0, 90), (60, 120), (180, 130)])
        assert alerts_of(session_factory, rule_id) == []  # above for 120 s of data time only
        feed(session_factory, code, [(240, 95)])  # dropped back before 5 minutes: the clock restarts
        feed(session_factory, code, [(300, 110), (500, 105)])
        assert alerts_of(session_factory, rule_id) == []
        feed(session_factory, code, [(600, 140)])  # held >= 100 since t=300 for 300 s
        [alert] = alerts_of(session_factory, rule_id)
        assert alert.status == "firing" and alert.value == 140 and alert.threshold == 100
        assert alert.started_at == T0 + timedelta(seconds=300)
        assert alert.subject == f"u:{WARD}" and alert.unit_code == WARD and alert.indicator_code == code
        feed(session_factory, code, [(660, 90), (720, 85)])  # between clear (80) and threshold: still firing
        assert open_alerts(session_factory, rule_id)[0].id == alert.id
        feed(session_factory, code, [(780, 80)])  # at the clear threshold: resolved by itself
    [done] = alerts_of(session_factory, rule_id)
    assert done.status == "resolved" and done.resolution == "auto" and done.open_key is None
    assert heard.topics() == ["alerts.firing", "alerts.resolved"]
    firing = heard.messages[0].data
    assert {"unit_code", "severity", "rule_id", "alert_id", "subject", "title"} <= set(firing)
    assert firing["rule_id"] == str(rule_id) and firing["unit_code"] == WARD and firing["severity"] == "high"


def test_threshold_below_direction_and_late_data(session_factory, engine, declared_types) -> None:
    code = make_indicator(session_factory)
    rule_id = make_rule(session_factory, declared_types, kind="threshold",
                        params={"indicator": code, "direction": "below", "threshold": 10, "clear_threshold": 15})
    feed(session_factory, code, [(0, 20), (60, 9)])
    assert len(open_alerts(session_factory, rule_id)) == 1
    feed(session_factory, code, [(30, 50)])  # late reading, older than what was decided on: ignored
    assert len(open_alerts(session_factory, rule_id)) == 1
    feed(session_factory, code, [(120, 12)])  # inside the band
    assert len(open_alerts(session_factory, rule_id)) == 1
    feed(session_factory, code, [(180, 16)])
    assert open_alerts(session_factory, rule_id) == []


def test_batch_is_evaluated_in_time_order(session_factory, engine, declared_types) -> None:
    code = make_indicator(session_factory)
    rule_id = make_rule(session_factory, declared_types, kind="threshold",
                        params={"indicator": code, "threshold": 50})
    # One batch, times out of order: 60 -> 70 (fires), 120 -> 20 (clears), 180 -> 80 (fires again).
    feed(session_factory, code, [(180, 80), (60, 70), (120, 20)], batch=True)
    states = [a.status for a in alerts_of(session_factory, rule_id)]
    assert states == ["resolved", "firing"]


def test_rule_scope_unit_subtree_entity_type_and_entity(session_factory, engine, declared_types) -> None:
    code = make_indicator(session_factory)
    in_ward = make_rule(session_factory, declared_types, kind="threshold",
                        params={"indicator": code, "threshold": 10}, unit_code=WARD)
    province = make_rule(session_factory, declared_types, kind="threshold",
                         params={"indicator": code, "threshold": 10}, unit_code="68")
    station = make_entity(session_factory, WARD2)
    other_kind = make_entity(session_factory, WARD2, kind="camera.ops_test")
    by_type = make_rule(session_factory, declared_types, kind="threshold",
                        params={"indicator": code, "threshold": 10}, unit_code="68", entity_type=ENTITY_TYPE)
    one = make_rule(session_factory, declared_types, kind="threshold",
                    params={"indicator": code, "threshold": 10}, unit_code="68", entity_id=station)
    feed(session_factory, code, [(0, 50)], unit=WARD2)
    feed(session_factory, code, [(0, 50)], unit=OTHER)
    feed(session_factory, code, [(0, 50)], unit=None, entity=station)
    feed(session_factory, code, [(0, 50)], unit=None, entity=other_kind)
    assert alerts_of(session_factory, in_ward) == []  # WARD2 and the stations are not in WARD
    assert sorted(a.subject for a in alerts_of(session_factory, province)) == sorted(
        [f"u:{WARD2}", f"e:{station}", f"e:{other_kind}"])  # Vũng Tàu is not in 68
    assert [a.subject for a in alerts_of(session_factory, by_type)] == [f"e:{station}"]
    assert [a.subject for a in alerts_of(session_factory, one)] == [f"e:{station}"]
    [alert] = alerts_of(session_factory, one)
    assert alert.entity_id == station and alert.unit_code == WARD2 and "Trạm" in alert.title


def test_suspect_readings_are_skipped_unless_asked_for(session_factory, engine, declared_types) -> None:
    code = make_indicator(session_factory)
    strict = make_rule(session_factory, declared_types, kind="threshold", params={"indicator": code, "threshold": 10})
    lenient = make_rule(session_factory, declared_types, kind="threshold",
                        params={"indicator": code, "threshold": 10, "max_quality": 1})
    with transaction(session_factory) as session:
        observations.ingest(session, actor=system_actor("test"), items=[
            {"indicator": code, "unit": WARD, "ts": T0.isoformat(), "value": 50.0, "quality": 1}])
    assert alerts_of(session_factory, strict) == []
    assert len(alerts_of(session_factory, lenient)) == 1


# ---------------------------------------------------------------------------------------------------------------
# rate of change, silence, event count, plan target


def test_rate_of_change(session_factory, engine, declared_types) -> None:
    code = make_indicator(session_factory)
    rule_id = make_rule(session_factory, declared_types, kind="rate_of_change",
                        params={"indicator": code, "rate": 2.0, "window_seconds": 600, "clear_rate": 0.5})
    feed(session_factory, code, [(0, 10), (60, 11), (120, 12)])  # 1 per minute
    assert alerts_of(session_factory, rule_id) == []
    feed(session_factory, code, [(180, 20)])  # 10 over 3 minutes: 3.33 per minute
    [alert] = alerts_of(session_factory, rule_id)
    assert alert.status == "firing" and alert.value == pytest.approx(10 / 3, rel=1e-3)
    assert alert.details["rate_per_minute"] == pytest.approx(10 / 3, rel=1e-3)
    feed(session_factory, code, [(600, 20)])  # 10 over 10 minutes: 1 per minute, above the clear rate
    assert open_alerts(session_factory, rule_id)
    feed(session_factory, code, [(1200, 20)])  # the window now holds only flat readings
    assert open_alerts(session_factory, rule_id) == []


def test_rate_of_change_falling(session_factory, engine, declared_types) -> None:
    code = make_indicator(session_factory)
    rule_id = make_rule(session_factory, declared_types, kind="rate_of_change",
                        params={"indicator": code, "rate": 1.0, "direction": "fall", "window_seconds": 300})
    feed(session_factory, code, [(0, 100), (60, 110)])  # rising: nothing
    assert alerts_of(session_factory, rule_id) == []
    feed(session_factory, code, [(120, 90)])  # 10 down over 2 minutes
    assert len(open_alerts(session_factory, rule_id)) == 1


def test_silence_fires_when_a_station_stops_and_clears_when_it_reports(session_factory, engine,
                                                                        declared_types) -> None:
    code = make_indicator(session_factory)
    station = make_entity(session_factory, WARD)
    rule_id = make_rule(session_factory, declared_types, kind="silence", params={"indicator": code, "minutes": 30},
                        unit_code="68", entity_type=ENTITY_TYPE)
    now = datetime.now(UTC).replace(microsecond=0)
    feed(session_factory, code, [(now - timedelta(minutes=2), 1.0)], unit=None, entity=station)
    engine.tick(now + timedelta(minutes=20))
    assert alerts_of(session_factory, rule_id) == []
    engine.tick(now + timedelta(minutes=29))
    [alert] = alerts_of(session_factory, rule_id)
    assert alert.status == "firing" and alert.subject == f"e:{station}" and alert.value == pytest.approx(31.0)
    engine.tick(now + timedelta(minutes=40))  # still silent: the same alert, not a second one
    assert len(alerts_of(session_factory, rule_id)) == 1
    feed(session_factory, code, [(now, 2.0)], unit=None, entity=station)  # it is back
    [alert] = alerts_of(session_factory, rule_id)
    assert alert.status == "resolved" and alert.resolution == "auto"


def test_silence_starts_from_latest_values_after_a_restart(session_factory, engine, declared_types) -> None:
    code = make_indicator(session_factory)
    now = datetime.now(UTC).replace(microsecond=0)
    feed(session_factory, code, [(now - timedelta(minutes=1), 1.0)], unit=WARD2)
    # The rule appears after the reading: its subjects come from observation_latest, not from the stream.
    rule_id = make_rule(session_factory, declared_types, kind="silence", params={"indicator": code, "minutes": 10},
                        unit_code="68")
    engine.tick(now + timedelta(minutes=15))
    assert [a.subject for a in alerts_of(session_factory, rule_id)] == [f"u:{WARD2}"]
    fresh = RulesEngine(session_factory).start()  # a restarted process: state from the database
    try:
        assert fresh.states[rule_id][f"u:{WARD2}"].alert_open
    finally:
        fresh.stop()


def _events(session_factory: sessionmaker[Session], registry: Registry, *times: datetime, unit: str = WARD,
            severity: str = "medium", entity: uuid.UUID | None = None) -> None:
    items = [{"type": EVENT_TYPE, "occurred_at": t.isoformat(), "unit_code": unit, "severity": severity,
              "title": "Xâm nhập", **({"entity_id": str(entity)} if entity else {})} for t in times]
    with transaction(session_factory) as session:
        emit(session, actor=system_actor("test"), registry=registry, items=items)
    assert wait_idle()


def test_event_count_in_a_sliding_window(session_factory, engine, declared_types) -> None:
    # Events only this test's rule counts: a fresh commune of Lâm Đồng nobody else writes events in here.
    rule_id = make_rule(session_factory, declared_types, kind="event_count",
                        params={"event_type": EVENT_TYPE, "count": 3, "window_seconds": 600, "per": "unit",
                                "min_severity": "medium"}, unit_code=WARD2)
    now = datetime.now(UTC).replace(microsecond=0)
    _events(session_factory, declared_types, now - timedelta(minutes=30), now - timedelta(minutes=3), unit=WARD2)
    _events(session_factory, declared_types, now - timedelta(minutes=2), unit=WARD2, severity="low")  # not counted
    _events(session_factory, declared_types, now - timedelta(minutes=2), unit=WARD)  # another unit
    assert open_alerts(session_factory, rule_id) == []
    _events(session_factory, declared_types, now - timedelta(minutes=1), unit=WARD2)
    assert open_alerts(session_factory, rule_id) == []  # two within ten minutes; the first is too old
    _events(session_factory, declared_types, now, unit=WARD2)
    [alert] = open_alerts(session_factory, rule_id)
    assert alert.subject == f"u:{WARD2}" and alert.value == 3 and alert.event_type == EVENT_TYPE
    _events(session_factory, declared_types, now)  # more events: still the one alert
    engine.tick(now + timedelta(minutes=5))  # all three still inside the window
    assert len(open_alerts(session_factory, rule_id)) == 1
    engine.tick(now + timedelta(minutes=8))  # the oldest has left the window
    assert open_alerts(session_factory, rule_id) == []
    assert alerts_of(session_factory, rule_id)[0].resolution == "auto"


def test_event_count_over_the_whole_scope(session_factory, engine, declared_types) -> None:
    rule_id = make_rule(session_factory, declared_types, kind="event_count",
                        params={"event_type": EVENT_TYPE, "count": 2, "window_seconds": 3600, "per": "rule"},
                        unit_code="68")
    now = datetime.now(UTC).replace(microsecond=0)
    _events(session_factory, declared_types, now - timedelta(minutes=1), unit=WARD)
    _events(session_factory, declared_types, now, unit=WARD2)
    [alert] = open_alerts(session_factory, rule_id)
    assert alert.subject == "*" and alert.unit_code == "68"


def test_plan_target(session_factory, engine, declared_types) -> None:
    code = make_indicator(session_factory, periodicity="month", subject_kind="unit")
    with transaction(session_factory) as session:
        upsert_targets(session, actor=system_actor("test"), code=code, items=[
            TargetIn(unit="68", period="2026-10", target_value=100.0),
            TargetIn(unit="68", period="2026", target_value=1000.0),  # the narrower period wins
        ])
    rule_id = make_rule(session_factory, declared_types, kind="plan_target",
                        params={"indicator": code, "direction": "below", "tolerance_pct": 10}, unit_code="68")
    october = datetime(2026, 10, 15, tzinfo=UTC)
    feed(session_factory, code, [(october, 95)], unit="68")  # within 10 % of 100
    assert alerts_of(session_factory, rule_id) == []
    feed(session_factory, code, [(october + timedelta(days=1), 85)], unit="68")
    [alert] = open_alerts(session_factory, rule_id)
    assert alert.value == 85 and alert.threshold == 100
    feed(session_factory, code, [(october + timedelta(days=2), 92)], unit="68")
    assert open_alerts(session_factory, rule_id) == []
    feed(session_factory, code, [(datetime(2026, 9, 15, tzinfo=UTC), 1.0)], unit="68")  # no target: nothing
    feed(session_factory, code, [(datetime(2026, 10, 20, tzinfo=UTC), 99.0)], unit=WARD)  # WARD has no target
    assert len(alerts_of(session_factory, rule_id)) == 1
    # A changed target is seen at once (the cache listens to targets.upserted).
    with transaction(session_factory) as session:
        upsert_targets(session, actor=system_actor("test"), code=code,
                       items=[TargetIn(unit="68", period="2026-10", target_value=200.0)])
    feed(session_factory, code, [(october + timedelta(days=3), 150)], unit="68")
    assert len(open_alerts(session_factory, rule_id)) == 1


# ---------------------------------------------------------------------------------------------------------------
# one open alert, flapping, manual resolution


def test_one_open_alert_per_rule_and_subject(session_factory, engine, declared_types) -> None:
    code = make_indicator(session_factory)
    rule_id = make_rule(session_factory, declared_types, kind="threshold", params={"indicator": code, "threshold": 5},
                        unit_code="68")
    feed(session_factory, code, [(0, 10), (60, 11), (120, 12)])
    feed(session_factory, code, [(0, 10)], unit=WARD2)
    assert sorted(a.subject for a in open_alerts(session_factory, rule_id)) == [f"u:{WARD}", f"u:{WARD2}"]
    with transaction(session_factory) as session:  # the service deduplicates too
        rule = session.get(Rule, rule_id)
        assert rule is not None
        again, new = alerts_service.fire(session, rule=rule, subject=f"u:{WARD}", unit_code=WARD, started_at=T0)
        assert not new and again.status == "firing"
    with pytest.raises(IntegrityError), transaction(session_factory) as session:  # and so does the database
        session.add(Alert(rule_id=rule_id, subject=f"u:{WARD}", open_key=f"{rule_id}:u:{WARD}", kind="threshold",
                          severity="high", title="dup", unit_code=WARD, started_at=T0))
    assert len(alerts_of(session_factory, rule_id)) == 2


def test_flapping_holds_the_alert_until_stable(session_factory, engine, declared_types) -> None:
    code = make_indicator(session_factory)
    rule_id = make_rule(session_factory, declared_types, kind="threshold", params={"indicator": code, "threshold": 50},
                        flap_limit=4, flap_window_seconds=600)
    with Heard("alerts.*") as heard:
        feed(session_factory, code, [(0, 60), (60, 40)])  # changes 1, 2: a normal fire and clear
        assert [a.status for a in alerts_of(session_factory, rule_id)] == ["resolved"]
        feed(session_factory, code, [(120, 60)])  # change 3: a second alert
        feed(session_factory, code, [(180, 40)])  # change 4: flapping, so it is held open
        second = alerts_of(session_factory, rule_id)[-1]
        assert second.status == "firing" and second.flapping
        for t, v in [(240, 60), (300, 40), (360, 60), (420, 40)]:  # keeps bouncing: no new alerts
            feed(session_factory, code, [(t, v)])
        assert len(alerts_of(session_factory, rule_id)) == 2
        feed(session_factory, code, [(700, 40)])  # changes at 180..420 are still within 10 minutes
        assert open_alerts(session_factory, rule_id)[0].flapping
        feed(session_factory, code, [(1030, 40)])  # quiet for 10 minutes since 420: resolved
    assert open_alerts(session_factory, rule_id) == []
    assert [a.status for a in alerts_of(session_factory, rule_id)] == ["resolved", "resolved"]
    assert heard.topics() == ["alerts.firing", "alerts.resolved", "alerts.firing", "alerts.flapping",
                              "alerts.resolved"]
    with session_factory() as session:
        actions = list(session.scalars(select(AlertHistory.action).where(AlertHistory.alert_id == second.id)
                                       .order_by(AlertHistory.at)))
    assert actions == ["firing", "flapping", "resolved"]


def test_flapping_detection_can_be_turned_off(session_factory, engine, declared_types) -> None:
    code = make_indicator(session_factory)
    rule_id = make_rule(session_factory, declared_types, kind="threshold", params={"indicator": code, "threshold": 50},
                        flap_limit=0)
    feed(session_factory, code, [(t * 60, 60 if t % 2 == 0 else 40) for t in range(8)])
    assert [a.status for a in alerts_of(session_factory, rule_id)] == ["resolved"] * 4


def test_disabling_a_rule_resolves_its_alerts_and_stops_it(session_factory, engine, declared_types,
                                                           headers_for, client) -> None:
    code = make_indicator(session_factory)
    rule_id = make_rule(session_factory, declared_types, kind="threshold", params={"indicator": code, "threshold": 5})
    feed(session_factory, code, [(0, 10)])
    r = client.patch(f"/api/rules/{rule_id}", json={"enabled": False}, headers=headers_for())
    assert r.status_code == 200, r.text
    [alert] = alerts_of(session_factory, rule_id)
    assert alert.status == "resolved" and "disabled" in alert.resolve_note
    feed(session_factory, code, [(60, 10)])
    assert len(alerts_of(session_factory, rule_id)) == 1
    r = client.patch(f"/api/rules/{rule_id}", json={"enabled": True, "params": {"indicator": code, "threshold": 20}},
                     headers=headers_for())
    assert r.status_code == 200, r.text
    feed(session_factory, code, [(120, 15)])
    assert len(alerts_of(session_factory, rule_id)) == 1  # the new threshold applies at once
    feed(session_factory, code, [(180, 25)])
    assert len(open_alerts(session_factory, rule_id)) == 1
    last = open_alerts(session_factory, rule_id)[0]
    r = client.delete(f"/api/rules/{rule_id}", headers=headers_for())
    assert r.status_code == 204
    with session_factory() as session:
        assert session.get(Rule, rule_id) is None
        kept = session.get(Alert, last.id)  # past alerts stay, without the link
        assert kept is not None and kept.status == "resolved" and kept.rule_id is None
    feed(session_factory, code, [(240, 30)])  # nothing watches it any more
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Alert).where(Alert.indicator_code == code)) == 2


def test_open_case_on_firing(session_factory, engine, declared_types) -> None:
    pytest.importorskip("saola.core.cases.service")
    code = make_indicator(session_factory)
    rule_id = make_rule(session_factory, declared_types, kind="threshold", params={"indicator": code, "threshold": 5},
                        open_case_type="incident")
    feed(session_factory, code, [(0, 10)])
    [alert] = alerts_of(session_factory, rule_id)
    assert alert.case_id is not None
    from saola.core.cases.models import Case  # type: ignore[import-not-found]

    with session_factory() as session:
        case = session.get(Case, alert.case_id)
        assert case is not None and case.unit_code == WARD
        actions = set(session.scalars(select(AlertHistory.action).where(AlertHistory.alert_id == alert.id)))
    assert "case_opened" in actions


# ---------------------------------------------------------------------------------------------------------------
# the rules API: bad input, scope


def _rule_body(code: str, **over: Any) -> dict[str, Any]:
    return {"name": "PM2.5 vượt ngưỡng", "kind": "threshold", "unit_code": "68",
            "params": {"indicator": code, "threshold": 55.5, "clear_threshold": 50, "min_duration_seconds": 3600},
            **over}


def _count_rules(session_factory: sessionmaker[Session]) -> int:
    with session_factory() as session:
        return session.scalar(select(func.count()).select_from(Rule)) or 0


@pytest.mark.parametrize(("over", "loc"), [
    ({"params": {"threshold": 1}}, ["body", "params", "indicator"]),
    ({"params": {"indicator": "CODE", "threshold": 1}}, ["body", "params", "indicator"]),
    ({"params": {"indicator": "{code}", "threshold": 10, "clear_threshold": 20}},
     ["body", "params", "clear_threshold"]),
    ({"params": {"indicator": "{code}", "threshold": 10, "bogus": 1}}, ["body", "params", "bogus"]),
    ({"params": {"indicator": "test.unknown_xyz", "threshold": 10}}, ["body", "params", "indicator"]),
    ({"params": {"indicator": "{code}", "threshold": "high"}}, ["body", "params", "threshold"]),
    ({"kind": "rate_of_change", "params": {"indicator": "{code}", "rate": -1}}, ["body", "params", "rate"]),
    ({"kind": "silence", "params": {"minutes": 0}}, ["body", "params", "minutes"]),
    ({"kind": "event_count", "params": {"event_type": "nobody.declares_this", "count": 2, "window_seconds": 600}},
     ["body", "params", "event_type"]),
    ({"kind": "event_count", "params": {"event_type": EVENT_TYPE, "count": 2, "window_seconds": 600,
                                        "clear_count": 2}}, ["body", "params", "clear_count"]),
    ({"kind": "magic"}, ["body", "kind"]),
    ({"severity": "apocalyptic"}, ["body", "severity"]),
    ({"unit_code": "99999"}, ["body", "unit_code"]),
    ({"unit_code": "68; drop"}, ["body", "unit_code"]),
    ({"entity_type": "nobody.declares_this"}, ["body", "entity_type"]),
    ({"entity_id": str(uuid.uuid4())}, ["body", "entity_id"]),
    ({"name": ""}, ["body", "name"]),
    ({"name": "a\x00b"}, ["body", "name"]),
    ({"flap_limit": -1}, ["body", "flap_limit"]),
    ({"open_case_type": "Not A Type"}, ["body", "open_case_type"]),
    ({"extra": 1}, ["body", "extra"]),
])
def test_bad_rules_are_refused_with_the_field_and_nothing_changes(client, headers_for, session_factory,
                                                                  over, loc) -> None:
    code = make_indicator(session_factory)
    body = _rule_body(code, **over)
    if isinstance(body["params"], dict):
        body["params"] = {k: (code if v == "{code}" else v) for k, v in body["params"].items()}
    before = _count_rules(session_factory)
    r = client.post("/api/rules", json=body, headers=headers_for())
    assert r.status_code == 422, r.text
    assert loc in [e["loc"][:len(loc)] for e in r.json()["errors"]], r.json()
    assert _count_rules(session_factory) == before


def test_rules_api_round_trip(client, headers_for, session_factory) -> None:
    code = make_indicator(session_factory)
    r = client.post("/api/rules", json=_rule_body(code, name="Bụi mịn PM2.5 cao", severity="critical"),
                    headers=headers_for())
    assert r.status_code == 201, r.text
    rule = r.json()
    assert rule["indicator_code"] == code and rule["params"]["min_duration_seconds"] == 3600
    assert rule["params"]["direction"] == "above" and rule["created_by"]
    r = client.get("/api/rules", params={"indicator": code}, headers=headers_for())
    assert [x["id"] for x in r.json()["items"]] == [rule["id"]]
    r = client.get("/api/rules", params={"q": "bui min pm2.5", "unit": "68"}, headers=headers_for())
    assert rule["id"] in [x["id"] for x in r.json()["items"]]
    r = client.patch(f"/api/rules/{rule['id']}", json={"severity": "low", "name_en": "PM2.5 high"},
                     headers=headers_for())
    assert r.status_code == 200 and r.json()["severity"] == "low" and r.json()["name_en"] == "PM2.5 high"
    r = client.patch(f"/api/rules/{rule['id']}", json={"kind": "silence"}, headers=headers_for())
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "params"]
    r = client.patch(f"/api/rules/{rule['id']}", json={"params": {"indicator": code, "threshold": 1,
                                                                   "clear_threshold": 2}}, headers=headers_for())
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "params", "clear_threshold"]
    r = client.patch(f"/api/rules/{rule['id']}", json={"severity": None}, headers=headers_for())
    assert r.status_code == 422
    assert client.get(f"/api/rules/{rule['id']}", headers=headers_for()).json()["severity"] == "low"
    assert client.get(f"/api/rules/{uuid.uuid4()}", headers=headers_for()).status_code == 404
    assert client.get("/api/rules/not-a-uuid", headers=headers_for()).status_code == 422
    assert client.delete(f"/api/rules/{rule['id']}", headers=headers_for()).status_code == 204
    assert client.get(f"/api/rules/{rule['id']}", headers=headers_for()).status_code == 404


def test_rule_scope_cannot_be_broken(client, headers_for, session_factory) -> None:
    code = make_indicator(session_factory)
    leader_68 = headers_for("leader", "68")
    r = client.post("/api/rules", json=_rule_body(code, unit_code="79"), headers=leader_68)
    assert r.status_code == 403, r.text
    r = client.post("/api/rules", json=_rule_body(code, unit_code=OTHER), headers=leader_68)
    assert r.status_code == 403
    r = client.post("/api/rules", json=_rule_body(code, unit_code="VN"), headers=leader_68)
    assert r.status_code == 403
    other_entity = make_entity(session_factory, OTHER)
    r = client.post("/api/rules", json=_rule_body(code, entity_id=str(other_entity)), headers=leader_68)
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "entity_id"]
    r = client.post("/api/rules", json=_rule_body(code, unit_code=WARD), headers=leader_68)
    assert r.status_code == 201
    mine = r.json()["id"]

    staff = headers_for("agency_staff", WARD)
    assert client.post("/api/rules", json=_rule_body(code, unit_code=WARD), headers=staff).status_code == 403
    assert client.get(f"/api/rules/{mine}", headers=staff).status_code == 200  # reads rules of its commune
    assert client.patch(f"/api/rules/{mine}", json={"severity": "low"}, headers=staff).status_code == 403
    assert client.delete(f"/api/rules/{mine}", headers=staff).status_code == 403

    leader_79 = headers_for("leader", "79")
    assert client.get(f"/api/rules/{mine}", headers=leader_79).status_code == 404
    assert client.patch(f"/api/rules/{mine}", json={"severity": "low"}, headers=leader_79).status_code == 404
    assert client.delete(f"/api/rules/{mine}", headers=leader_79).status_code == 404
    assert mine not in [x["id"] for x in client.get("/api/rules", headers=leader_79).json()["items"]]
    r = client.patch(f"/api/rules/{mine}", json={"unit_code": "79"}, headers=leader_68)
    assert r.status_code == 403
    assert client.get("/api/rules", headers={}).status_code == 401


class _DefaultRules:
    """A pack proposing default rules through the hook."""

    def __init__(self, code: str, key: str) -> None:
        self.code, self.key = code, key

    @hookimpl
    def saola_default_rules(self) -> list[RuleDefinition]:
        return [
            RuleDefinition(key=self.key, name_vi="Trạm mất tín hiệu", name_en="Station silent", kind="silence",
                           params={"indicator": self.code, "minutes": 30, "unit_code": "68"}, severity="medium"),
            RuleDefinition(key=self.key + ".bad", name_vi="Sai", name_en="Broken", kind="threshold",
                           params={"indicator": "test.not_there_at_all", "threshold": 1}),
        ]


def test_default_rules_install_once_by_key(session_factory, declared_types) -> None:
    code = make_indicator(session_factory)
    key = f"test.{unique('k')}"
    pm = pluggy.PluginManager("saola")
    pm.add_hookspecs(hookspecs)
    pm.register(_DefaultRules(code, key))
    for _ in range(2):
        with transaction(session_factory) as session:
            install_default_rules(session, actor=system_actor("test"), registry=declared_types, plugin_manager=pm)
    with session_factory() as session:
        rules = list(session.scalars(select(Rule).where(Rule.key.startswith(key))))
    assert [(r.key, r.kind, r.unit_code, r.params["minutes"]) for r in rules] == [(key, "silence", "68", 30)]


# ---------------------------------------------------------------------------------------------------------------
# the engine's thread (PostgreSQL) and the evaluation in the writer's thread (SQLite)


def _ingest(session_factory: sessionmaker[Session], code: str, *points: tuple[int, float]) -> None:
    """One batch of readings of WARD, committed without waiting for the rules."""
    with transaction(session_factory) as session:
        observations.ingest(session, actor=system_actor("test"), items=[
            {"indicator": code, "unit": WARD, "ts": (T0 + timedelta(seconds=s)).isoformat(), "value": v}
            for s, v in points])


def _alerts_now(session_factory: sessionmaker[Session], rule_id: uuid.UUID) -> list[Alert]:
    """The alerts of a rule as the database holds them at this instant (no waiting for the engine)."""
    with session_factory() as session:
        return list(session.scalars(select(Alert).where(Alert.rule_id == rule_id).order_by(Alert.fired_at)))


def test_writers_hand_batches_to_the_engine_thread_on_postgresql(session_factory, engine, declared_types,
                                                                  backend, client, headers_for) -> None:
    assert engine.threaded == (backend == "postgresql")
    if not engine.threaded:
        return  # SQLite: covered by every other test here (the rules run in the writer's thread, after commit)
    code = make_indicator(session_factory)
    rule_id = make_rule(session_factory, declared_types, kind="threshold",
                        params={"indicator": code, "threshold": 50, "clear_threshold": 40})
    with engine.lock:  # the engine's thread cannot evaluate while the test holds its lock
        _ingest(session_factory, code, (0, 60))  # returns: the writer did not wait for the rules
        _ingest(session_factory, code, (60, 30))
        _ingest(session_factory, code, (120, 70))
        assert engine.pending() >= 1 and not engine.wait(0.05)
        assert _alerts_now(session_factory, rule_id) == []
    assert engine.wait() and engine.pending() == 0
    # the three batches, in commit order: fired, cleared, fired again
    assert [a.status for a in _alerts_now(session_factory, rule_id)] == ["resolved", "firing"]
    with engine.lock:
        _ingest(session_factory, code, (180, 10))
    # a read through the API lets the engine catch up with readings committed before it
    r = client.get("/api/alerts", params={"rule": str(rule_id)}, headers=headers_for())
    assert [a["status"] for a in r.json()["items"]] == ["resolved", "resolved"]


def test_the_engine_thread_survives_a_failing_batch(session_factory, engine, declared_types, backend) -> None:
    code = make_indicator(session_factory)
    rule_id = make_rule(session_factory, declared_types, kind="threshold", params={"indicator": code, "threshold": 5})
    errors = engine.stats["errors"]
    broken = {"items": [{"indicator": code, "unit": WARD, "ts": "not a time", "value": 9.0}]}
    engine._hand_in(Message("observations.ingested", broken, "0-1"))  # what no writer sends; it must not stop it
    assert engine.wait()
    assert engine.stats["errors"] == errors + 1
    feed(session_factory, code, [(0, 10)])
    assert [a.status for a in alerts_of(session_factory, rule_id)] == ["firing"]
