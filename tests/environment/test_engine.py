"""The AQI engine on the stream: indices computed incrementally as batches arrive, written back through the
kernel's ingest; stuck sensors, gaps and impossible values flagged, kept and left out; the default rules fire."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from saola.core.alerts.models import Alert
from saola.core.auth.context import system_actor
from saola.core.indicators.models import Indicator
from saola.core.observations.models import LatestObservation, Observation, Subject
from saola.core.observations.service import ingest
from saola.core.rules.models import Rule
from saola.db.engine import transaction
from saola.domains.environment import aqi
from saola.domains.environment.engine import AqiEngine, wait_idle
from saola.domains.environment.models import QualityFlag, StationState


def _state(session_factory: sessionmaker[Session], sid: str) -> StationState:
    with session_factory() as session:
        state = session.get(StationState, uuid.UUID(sid))
        assert state is not None
        session.expunge(state)
        return state


def _latest(session_factory: sessionmaker[Session], sid: str, code: str) -> float | None:
    with session_factory() as session:
        return session.scalar(select(LatestObservation.value)
                              .join(Subject, Subject.id == LatestObservation.subject_id)
                              .join(Indicator, Indicator.id == LatestObservation.indicator_id)
                              .where(Subject.entity_id == uuid.UUID(sid), Indicator.code == code))


def _values(session_factory: sessionmaker[Session], sid: str, code: str) -> list[tuple[datetime, float]]:
    with session_factory() as session:
        return [(t, v) for t, v in session.execute(
            select(Observation.ts, Observation.value).join(Subject, Subject.id == Observation.subject_id)
            .join(Indicator, Indicator.id == Observation.indicator_id)
            .where(Subject.entity_id == uuid.UUID(sid), Indicator.code == code).order_by(Observation.ts))]


PM = [14.0, 18.0, 25.0, 31.0, 40.0, 38.0, 33.0, 29.0, 45.0, 52.0, 61.0, 58.0]


def test_hourly_index_follows_each_batch(engine: AqiEngine, make_station: Callable[..., str], send: Any,
                                         base_hour: datetime, session_factory: sessionmaker[Session]) -> None:
    sid = make_station()
    for i, value in enumerate(PM):  # one batch per hour, as a station network sends them
        hour = base_hour + timedelta(hours=i)
        send([("env.pm25", sid, hour + timedelta(minutes=10), value - 2),
              ("env.pm25", sid, hour + timedelta(minutes=40), value + 2),
              ("env.no2", sid, hour + timedelta(minutes=40), 60.0 + i)])
        expected = aqi.vn_hourly({"pm25": PM[:i + 1], "no2": [60.0 + i]})
        state = _state(session_factory, sid)
        assert state.aqi_vn == expected.aqi, (i, state.details)
        assert state.dominant == expected.dominant
        assert _latest(session_factory, sid, "env.aqi_vn") == expected.aqi
        assert state.aqi_us == aqi.us_hourly({"pm25": PM[:i + 1], "no2": [60.0 + i]}).aqi
    # one index reading per hour (each at the time of its hour's newest reading), never one per raw reading
    # (the first hour has none: the NowCast needs 2 of the 3 newest hours)
    written = _values(session_factory, sid, "env.aqi_vn")
    assert len(written) == len(PM) - 1
    assert [t.minute for t, _ in written] == [40] * (len(PM) - 1)
    # the day's running index: PM 24-hour mean of the local day so far
    assert state.aqi_vn_day is not None


def test_one_batch_of_many_hours_gives_every_hour_its_index(
        engine: AqiEngine, make_station: Callable[..., str], send: Any, base_hour: datetime,
        session_factory: sessionmaker[Session]) -> None:
    sid = make_station()
    send([("env.pm25", sid, base_hour + timedelta(hours=i), v) for i, v in enumerate(PM)])
    written = [v for _, v in _values(session_factory, sid, "env.aqi_vn")]
    assert written == [aqi.vn_hourly({"pm25": PM[:i + 1]}).aqi for i in range(1, len(PM))]
    # a re-delivered batch changes nothing
    send([("env.pm25", sid, base_hour + timedelta(hours=i), v) for i, v in enumerate(PM)])
    assert [v for _, v in _values(session_factory, sid, "env.aqi_vn")] == written


def test_batches_sent_faster_than_evaluated_give_the_same_hourly_series(
        engine: AqiEngine, make_station: Callable[..., str], base_hour: datetime,
        session_factory: sessionmaker[Session]) -> None:
    # Back to back, without waiting: the engine may take several batches in one round (and write once); every
    # hour must still get its index, with the final value of the hour.
    sid = make_station()
    for i, value in enumerate(PM):
        hour = base_hour + timedelta(hours=i)
        with transaction(session_factory) as session:
            ingest(session, actor=system_actor("test"), items=[
                {"indicator": "env.pm25", "entity": sid, "ts": hour + timedelta(minutes=m), "value": value + d}
                for m, d in ((10, -2.0), (40, 2.0))])
    assert wait_idle()
    assert [v for _, v in _values(session_factory, sid, "env.aqi_vn")] == [
        aqi.vn_hourly({"pm25": PM[:i + 1]}).aqi for i in range(1, len(PM))]
    assert _state(session_factory, sid).aqi_vn == aqi.vn_hourly({"pm25": PM}).aqi


def test_restart_restores_from_rollups_not_raw_history(
        engine: AqiEngine, make_station: Callable[..., str], send: Any, base_hour: datetime,
        session_factory: sessionmaker[Session]) -> None:
    sid = make_station()
    send([("env.pm25", sid, base_hour + timedelta(hours=i, minutes=m), v + m / 10)
          for i, v in enumerate(PM) for m in (0, 30)])
    fresh = AqiEngine(session_factory)
    fresh.restore()
    station = fresh.stations[sid]
    hour = max(station.newest_in_hour)
    assert fresh.indices(station, hour)["vn"].aqi == _state(session_factory, sid).aqi_vn


def test_stuck_sensor_is_flagged_kept_and_left_out(
        engine: AqiEngine, make_station: Callable[..., str], send: Any, base_hour: datetime,
        session_factory: sessionmaker[Session], client: TestClient, admin_headers: dict[str, str]) -> None:
    sid = make_station()
    moving = [(base_hour + timedelta(minutes=10 * k), 20.0 + (k % 5)) for k in range(36)]  # 6 hours, varying
    stuck_from = base_hour + timedelta(hours=6)
    stuck = [(stuck_from + timedelta(minutes=10 * k), 90.0) for k in range(12)]  # 2 hours on 90.0
    send([("env.pm25", sid, t, v) for t, v in moving + stuck])
    state = _state(session_factory, sid)
    assert state.stuck == ["env.pm25"]
    assert _latest(session_factory, sid, "env.sensors_stuck") == 1
    # kept: every reading is stored
    assert len(_values(session_factory, sid, "env.pm25")) == len(moving) + len(stuck)
    # left out: the index is what the moving readings alone give (the stuck hours count as missing)
    hourly = [sum(v for t, v in moving if t.hour == h.hour and t.date() == h.date()) / 6
              for h in (base_hour + timedelta(hours=i) for i in range(6))]
    # The stuck hour 6 counts as missing (its readings are taken back out); hour 7 holds stuck readings only.
    expected = aqi.vn_hourly({"pm25": [*hourly, None]})
    naive = aqi.vn_hourly({"pm25": [*hourly, 90.0]})
    assert state.aqi_vn == expected.aqi and expected.aqi != naive.aqi
    flags = client.get(f"/api/environment/stations/{sid}/flags", headers=admin_headers).json()
    assert [f["kind"] for f in flags] == ["stuck"] and flags[0]["ended_at"] is None
    feature = _feature(client, admin_headers, sid)
    assert feature["properties"]["status"] in ("stuck", "silent")
    # the sensor moves again: the flag closes and the count drops to 0
    send([("env.pm25", sid, stuck_from + timedelta(hours=2, minutes=10), 35.0)])
    assert _state(session_factory, sid).stuck == []
    assert _latest(session_factory, sid, "env.sensors_stuck") == 0
    flags = client.get(f"/api/environment/stations/{sid}/flags", headers=admin_headers).json()
    assert flags[0]["ended_at"] is not None


def test_a_stuck_run_reaching_a_new_hour_still_gives_a_state(
        engine: AqiEngine, make_station: Callable[..., str], send: Any, session_factory: sessionmaker[Session]) -> None:
    # The run turns stuck on a reading of a new hour, so that hour holds no good reading; when it is in the same
    # local day as the hour before (base 11:00 UTC: hours 6 to 8 fall on one local day), the newest hour with
    # readings must still get its day's figures (the engine once failed here on a missing daily index).
    base = (datetime.now(UTC) - timedelta(days=3)).replace(hour=11, minute=0, second=0, microsecond=0)
    sid = make_station()
    errors = engine.stats["errors"]
    moving = [(base + timedelta(minutes=10 * k), 20.0 + (k % 5)) for k in range(36)]
    stuck = [(base + timedelta(hours=6, minutes=10 * k), 90.0) for k in range(12)]
    send([("env.pm25", sid, t, v) for t, v in moving + stuck])
    state = _state(session_factory, sid)
    assert engine.stats["errors"] == errors
    assert state.stuck == ["env.pm25"] and state.aqi_vn is not None


def _feature(client: TestClient, headers: dict[str, str], sid: str) -> dict[str, Any]:
    r = client.get("/api/environment/stations.geojson", headers=headers)
    assert r.status_code == 200, r.text
    return next(f for f in r.json()["features"] if f["id"] == sid)


def test_impossible_values_and_gaps_are_flagged_and_left_out(
        engine: AqiEngine, make_station: Callable[..., str], send: Any, base_hour: datetime,
        session_factory: sessionmaker[Session]) -> None:
    sid = make_station()
    send([("env.pm25", sid, base_hour + timedelta(hours=i), v) for i, v in enumerate(PM[:3])])
    before = _state(session_factory, sid).aqi_vn
    result = send([("env.pm25", sid, base_hour + timedelta(hours=2, minutes=30), 5000.0)])  # above 1000 µg/m³
    assert result.flagged == 1
    assert _state(session_factory, sid).aqi_vn == before
    send([("env.pm25", sid, base_hour + timedelta(hours=6), 20.0)])  # 4 hours after the last good reading
    with session_factory() as session:
        kinds = sorted(session.scalars(select(QualityFlag.kind).where(QualityFlag.entity_id == uuid.UUID(sid))))
    assert kinds == ["gap", "range"]


def test_bad_air_fires_the_default_rule(
        default_rules: None, engine: AqiEngine, make_station: Callable[..., str], send: Any, base_hour: datetime,
        session_factory: sessionmaker[Session]) -> None:
    from saola.core.rules import engine as rules_engine

    sid = make_station()
    with session_factory() as session:
        rule = session.scalar(select(Rule).where(Rule.key == "environment.aqi_bad"))
        assert rule is not None and rule.enabled
        rule_id = rule.id
    # 120 µg/m³ of PM2.5 for three hours: NowCast 120 -> VN_AQI 179 (Xấu)
    send([("env.pm25", sid, base_hour + timedelta(hours=i), 120.0) for i in range(3)])
    assert _state(session_factory, sid).aqi_vn == 179
    wait = getattr(rules_engine, "wait_idle", None)
    if wait is not None:
        assert wait()
    with session_factory() as session:
        alert = session.scalar(select(Alert).where(Alert.rule_id == rule_id, Alert.subject == f"e:{sid}"))
    assert alert is not None and alert.status == "firing"
    # a QCVN 05 exceedance too: the 24-hour PM2.5 limit is 50 (45 from 2026)
    assert _latest(session_factory, sid, "env.qcvn05_exceedances") is not None

