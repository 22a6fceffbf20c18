"""Observations: bulk ingest (validation, scope, duplicates, flags), rollups, series queries and latest values."""

from __future__ import annotations

import math
import os
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, func, select, text
from sqlalchemy.orm import Session, sessionmaker

from saola.bus import get_bus
from saola.core.auth.context import Actor, system_actor
from saola.core.entities.models import Entity
from saola.core.errors import Forbidden, ValidationFailed
from saola.core.health.metrics import OBSERVATIONS_INGESTED
from saola.core.indicators.models import Indicator
from saola.core.indicators.schemas import IndicatorCreate
from saola.core.indicators.service import create_indicator
from saola.core.observations import service
from saola.core.observations.models import DailyRollup, HourlyRollup, LatestObservation, Observation, Subject
from saola.core.observations.schemas import ObservationIn
from saola.db.engine import transaction
from saola.db.outbox import OutboxEntry
from tests.conftest import unique

WARD = "24781"  # Phường Xuân Hương - Đà Lạt (province 68)
WARD2 = "24787"  # Phường Cam Ly - Đà Lạt (province 68)
OTHER = "26506"  # Phường Vũng Tàu (province 79)
T0 = datetime(2026, 10, 1, tzinfo=UTC)


def make_indicator(session_factory: sessionmaker[Session], **fields: Any) -> str:
    """A fresh indicator only this test writes to."""
    code = f"test.{unique('o')}"
    data = IndicatorCreate(code=code, name_vi="Chỉ số thử", name_en="Test indicator", domain="test", **fields)
    with transaction(session_factory) as session:
        create_indicator(session, actor=system_actor("test"), data=data)
    return code


def make_entity(session_factory: sessionmaker[Session], unit_code: str, name: str = "Trạm quan trắc") -> uuid.UUID:
    """An entity (a station) in a unit, written straight to its table."""
    with transaction(session_factory) as session:
        entity = Entity(type="station.test", name=name, unit_code=unit_code, external_id=unique("st"))
        session.add(entity)
        session.flush()
        return entity.id


def ingest(session_factory: sessionmaker[Session], items: list[dict[str, Any]], actor: Actor | None = None,
           now: datetime | None = None):  # type: ignore[no-untyped-def]
    with transaction(session_factory) as session:
        return service.ingest(session, actor=actor or system_actor("test"), items=items, now=now)


def row(code: str, ts: datetime, value: float, unit: str | None = WARD, **extra: Any) -> dict[str, Any]:
    return {"indicator": code, "unit": unit, "ts": ts.isoformat(), "value": value, **extra}


def indicator_id(session: Session, code: str) -> int:
    """The integer key of an indicator."""
    return session.scalar(select(Indicator.id).where(Indicator.code == code))  # type: ignore[return-value]


def counts(session_factory: sessionmaker[Session]) -> dict[str, int]:
    """Row counts of every table ingest writes to."""
    with session_factory() as session:
        return {t.__tablename__: session.scalar(select(func.count()).select_from(t)) or 0
                for t in (Observation, HourlyRollup, DailyRollup, LatestObservation, Subject, OutboxEntry)}


def series(client: TestClient, headers: dict[str, str], **params: Any) -> dict[str, Any]:
    r = client.get("/api/observations", params=params, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def points(client: TestClient, headers: dict[str, str], **params: Any) -> list[tuple[str, float, int]]:
    return [(p["ts"], p["value"], p["count"]) for p in series(client, headers, **params)["points"]]


def iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


# --------------------------------------------------------------------------------------------------------------
# round trips


def test_ingest_and_query_at_every_bucket(client: TestClient, admin_headers, session_factory) -> None:
    code = make_indicator(session_factory, aggregation="avg")
    # 10:00, 10:00:30, 10:01, 11:00 UTC on Oct 1; 18:00 UTC Oct 1 (already Oct 2 in Vietnam); Nov 3.
    times = [T0 + timedelta(hours=10), T0 + timedelta(hours=10, seconds=30), T0 + timedelta(hours=10, minutes=1),
             T0 + timedelta(hours=11), T0 + timedelta(hours=18), T0 + timedelta(days=33, hours=2)]
    values = [1.0, 3.0, 5.0, 7.0, 9.0, 11.0]
    result = ingest(session_factory, [row(code, t, v) for t, v in zip(times, values, strict=True)])
    assert (result.accepted, result.duplicates, result.flagged) == (6, 0, 0)
    window = {"indicator": code, "unit": WARD, "start": iso(T0), "end": iso(T0 + timedelta(days=40))}

    raw = points(client, admin_headers, **window, bucket="raw")
    assert [(p[1], p[2]) for p in raw] == [(v, 1) for v in values]
    assert raw[0][0].startswith("2026-10-01T10:00:00")

    minute = points(client, admin_headers, **{**window, "end": iso(T0 + timedelta(days=1))}, bucket="minute")
    assert [(p[1], p[2]) for p in minute] == [(2.0, 2), (5.0, 1), (7.0, 1), (9.0, 1)]
    assert minute[1][0].startswith("2026-10-01T10:01:00")

    hour = points(client, admin_headers, **window, bucket="hour")
    assert [(p[1], p[2]) for p in hour] == [(3.0, 3), (7.0, 1), (9.0, 1), (11.0, 1)]
    assert hour[0][0].startswith("2026-10-01T10:00:00")

    day = points(client, admin_headers, **window, bucket="day")
    # Local days: Oct 1 holds 10:00-11:00 UTC; 18:00 UTC is Oct 2 local (bucket starts 17:00 UTC Oct 1).
    assert [(p[0][:19], p[1], p[2]) for p in day] == [
        ("2026-09-30T17:00:00", 4.0, 4), ("2026-10-01T17:00:00", 9.0, 1), ("2026-11-02T17:00:00", 11.0, 1)]

    month = points(client, admin_headers, **window, bucket="month")
    assert [(p[0][:19], p[1], p[2]) for p in month] == [
        ("2026-09-30T17:00:00", 5.0, 5), ("2026-10-31T17:00:00", 11.0, 1)]

    for agg, expected in (("sum", 25.0), ("min", 1.0), ("max", 9.0), ("count", 5.0), ("last", 9.0)):
        got = points(client, admin_headers, **window, bucket="month", agg=agg)
        assert got[0][1] == expected, agg
    assert points(client, admin_headers, **window, bucket="raw", agg="last")[-1][1] == 11.0
    assert points(client, admin_headers, **{**window, "end": iso(T0 + timedelta(days=1))}, bucket="minute",
                  agg="sum")[0][1] == 4.0
    # The default aggregation is the indicator's own.
    assert series(client, admin_headers, **window, bucket="day")["agg"] == "avg"


def _expected_rollups(observations: list[tuple[datetime, float, int]], bucket_of) -> dict:  # type: ignore[no-untyped-def]
    groups: dict[datetime, list[tuple[datetime, float]]] = defaultdict(list)
    for ts, value, quality in observations:
        if quality == 0:
            groups[bucket_of(ts)].append((ts, value))
    return {b: (len(v), sum(x for _, x in v), min(x for _, x in v), max(x for _, x in v), max(v)[1])
            for b, v in groups.items()}


def _stored_rollups(session: Session, model: Any, indicator_id: int, subject_id: int) -> dict:  # type: ignore[no-untyped-def]
    rows = session.scalars(select(model).where(model.indicator_id == indicator_id, model.subject_id == subject_id))
    return {r.bucket: (r.count, r.sum, r.min, r.max, r.last_value) for r in rows}


def _local_day(ts: datetime) -> datetime:
    local = ts + timedelta(hours=7)
    return datetime(local.year, local.month, local.day, tzinfo=UTC) - timedelta(hours=7)


def _stored_series(session_factory: sessionmaker[Session], code: str) -> tuple[list[tuple[datetime, float, int]],
                                                                                dict, dict, Any]:
    """An indicator's raw readings at WARD as (ts, value, quality), its hourly and daily rollups and latest value."""
    with session_factory() as session:
        ind_id = indicator_id(session, code)
        sid = session.scalar(select(Subject.id).where(Subject.key == f"u:{WARD}"))
        stored = [(o.ts, o.value, o.quality) for o in session.scalars(
            select(Observation).where(Observation.indicator_id == ind_id, Observation.subject_id == sid))]
        return (stored, _stored_rollups(session, HourlyRollup, ind_id, sid),
                _stored_rollups(session, DailyRollup, ind_id, sid), session.get(LatestObservation, (ind_id, sid)))


def _assert_rollups_of(stored: list[tuple[datetime, float, int]], hourly: dict, daily: dict) -> None:
    """The rollups are exactly those of the good raw readings: by UTC hour, and by local (UTC+7) day."""
    want_h = _expected_rollups(stored, lambda ts: ts.replace(minute=0, second=0, microsecond=0))
    want_d = _expected_rollups(stored, _local_day)
    assert hourly.keys() == want_h.keys() and daily.keys() == want_d.keys()
    for got, want in ((hourly, want_h), (daily, want_d)):
        for b, (n, total, lo, hi, last) in want.items():
            assert got[b][0] == n and got[b][2:] == (lo, hi, last)
            assert got[b][1] == pytest.approx(total)


def test_rollups_match_raw_with_duplicates_and_resend(session_factory) -> None:
    code = make_indicator(session_factory, min_value=0, max_value=1000)
    # Readings every 7 minutes over ~3 local days, in two batches that overlap in time order.
    readings = [(T0 + timedelta(hours=15, minutes=7 * k), float((k * 37) % 101)) for k in range(700)]
    first = [row(code, ts, v) for ts, v in readings[:400]]
    second = [row(code, ts, v) for ts, v in readings[350:]]  # 50 already stored
    # Within-batch duplicates: the last copy wins.
    second.append(row(code, readings[500][0], 999.0))
    second.append(row(code, readings[360][0], 555.0))  # already stored by the first batch: first write wins
    r1 = ingest(session_factory, first)
    r2 = ingest(session_factory, second)
    assert (r1.accepted, r1.duplicates) == (400, 0)
    assert (r2.accepted, r2.duplicates) == (300, len(second) - 300)
    before = counts(session_factory)
    r3 = ingest(session_factory, second)  # the whole batch again
    assert (r3.accepted, r3.duplicates) == (0, len(second))
    after = counts(session_factory)
    assert {k: after[k] - before[k] for k in after} == {
        "observations": 0, "observation_rollups_hourly": 0, "observation_rollups_daily": 0,
        "observation_latest": 0, "subjects": 0, "outbox": 1}

    stored, hourly, daily, latest = _stored_series(session_factory, code)
    assert len(stored) == 700
    by_ts = {ts: v for ts, v, _ in stored}
    assert by_ts[readings[500][0]] == 999.0 and by_ts[readings[360][0]] == readings[360][1]
    _assert_rollups_of(stored, hourly, daily)
    assert len(daily) == 5  # 22:00 local Oct 1 to 07:40 local Oct 5
    assert latest is not None and latest.ts == readings[-1][0] and latest.value == readings[-1][1]


@pytest.mark.parametrize("size", [1, 12, 31, 40, 700])
def test_rollups_stay_exact_for_every_batch_size(session_factory, size: int) -> None:
    # On PostgreSQL a few readings go in one statement with their rollup deltas, more by COPY; both must give the
    # same rollups, with a re-sent reading, a copy within the batch and an out-of-range value among them.
    code = make_indicator(session_factory, min_value=0, max_value=100)
    readings = [(T0 + timedelta(minutes=13 * k), float((k * 29) % 97)) for k in range(90)]
    sent = 0
    while sent < len(readings):
        chunk = readings[max(0, sent - 1):sent + size]  # each batch repeats the last reading of the one before
        batch = [row(code, ts, v) for ts, v in chunk]
        batch.append(row(code, chunk[-1][0], 99.5))  # a later copy within the batch wins
        if sent == 0:
            batch.append(row(code, T0 - timedelta(minutes=1), 500.0))  # out of range: stored as bad
        result = ingest(session_factory, batch)
        assert result.duplicates == len(batch) - result.accepted
        sent += size
    stored, hourly, daily, latest = _stored_series(session_factory, code)
    assert len(stored) == len(readings) + 1 and sum(1 for *_, q in stored if q == 2) == 1
    _assert_rollups_of(stored, hourly, daily)
    newest = max(stored)
    assert latest is not None and (latest.ts, latest.value) == (newest[0], newest[1])


def test_daily_bucket_cuts_at_local_midnight(client: TestClient, admin_headers, session_factory) -> None:
    code = make_indicator(session_factory, aggregation="sum")
    before_midnight = datetime(2026, 10, 5, 16, 59, 59, tzinfo=UTC)  # 23:59:59 in Vietnam
    midnight = datetime(2026, 10, 5, 17, 0, tzinfo=UTC)  # 00:00 on Oct 6 in Vietnam
    ingest(session_factory, [row(code, before_midnight, 1.0), row(code, midnight, 10.0)])
    got = series(client, admin_headers, indicator=code, unit=WARD, bucket="day",
                 start=iso(datetime(2026, 10, 4, tzinfo=UTC)), end=iso(datetime(2026, 10, 8, tzinfo=UTC)))
    assert [(p["ts"][:19], p["value"]) for p in got["points"]] == [
        ("2026-10-04T17:00:00", 1.0), ("2026-10-05T17:00:00", 10.0)]
    # Hours stay in UTC: 16:00 and 17:00 are different hours too, and a local-time start is understood.
    hours = points(client, admin_headers, indicator=code, unit=WARD, bucket="hour",
                   start="2026-10-05T23:00:00+07:00", end="2026-10-06T01:00:00+07:00")
    assert [(p[0][:16], p[1]) for p in hours] == [("2026-10-05T16:00", 1.0), ("2026-10-05T17:00", 10.0)]


def test_within_aggregates_a_subtree(client: TestClient, admin_headers, session_factory) -> None:
    code = make_indicator(session_factory)
    station = make_entity(session_factory, WARD2)
    ts = T0 + timedelta(days=2, hours=3)
    ingest(session_factory, [row(code, ts, 10.0), row(code, ts, 20.0, unit=WARD2),
                             {"indicator": code, "entity": str(station), "ts": ts.isoformat(), "value": 60.0},
                             row(code, ts, 1000.0, unit=OTHER)])
    window = {"indicator": code, "start": iso(ts - timedelta(hours=1)), "end": iso(ts + timedelta(hours=1))}
    assert points(client, admin_headers, **window, within="68")[0][1:] == (30.0, 3)
    assert points(client, admin_headers, **window, within="68", kind="unit")[0][1:] == (15.0, 2)
    assert points(client, admin_headers, **window, within=WARD2, agg="sum")[0][1:] == (80.0, 2)
    assert points(client, admin_headers, **window, within="VN", agg="max")[0][1:] == (1000.0, 4)
    assert points(client, admin_headers, **window, entity=str(station), bucket="raw")[0][1:] == (60.0, 1)


def test_entity_subject_lives_in_its_unit(session_factory) -> None:
    code = make_indicator(session_factory, subject_kind="entity")
    station = make_entity(session_factory, WARD)
    ingest(session_factory, [{"indicator": code, "entity": station, "ts": T0, "value": 1.5}])
    with session_factory() as session:
        subject = session.scalar(select(Subject).where(Subject.key == f"e:{station}"))
    assert subject is not None and subject.kind == "entity" and subject.unit_code == WARD
    assert subject.entity_id == station
    # An entity-only indicator refuses unit subjects, naming the field.
    with pytest.raises(ValidationFailed) as err:
        ingest(session_factory, [row(code, T0, 1.0)])
    assert err.value.errors[0].loc == ["items", 0, "unit"]


def test_latest_values(client: TestClient, admin_headers, session_factory) -> None:
    code, code2 = make_indicator(session_factory), make_indicator(session_factory)
    station = make_entity(session_factory, WARD2, name="Trạm Cam Ly")
    t = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    ingest(session_factory, [row(code, t - timedelta(hours=1), 1.0), row(code, t, 2.0),
                             {"indicator": code, "entity": str(station), "ts": t.isoformat(), "value": 5.0},
                             row(code2, t, 9.0, unit=OTHER)])
    # A late reading older than the stored latest does not replace it.
    ingest(session_factory, [row(code, t - timedelta(minutes=30), 3.0)])
    r = client.get("/api/observations/latest", params={"indicator": [code, code2]}, headers=admin_headers)
    assert r.status_code == 200, r.text
    got = {(x["indicator"], x["subject_kind"], x["unit_code"]): x for x in r.json()}
    assert set(got) == {(code, "unit", WARD), (code, "entity", WARD2), (code2, "unit", OTHER)}
    ward = got[(code, "unit", WARD)]
    assert ward["value"] == 2.0 and ward["label"].startswith("Phường Xuân Hương") and ward["quality"] == 0
    assert 590 <= ward["age_seconds"] < 3600
    assert got[(code, "entity", WARD2)]["label"] == "Trạm Cam Ly"
    assert got[(code, "entity", WARD2)]["entity_id"] == str(station)
    within = client.get("/api/observations/latest", params={"indicator": [code, code2], "within": "68",
                                                            "kind": "entity"}, headers=admin_headers).json()
    assert [(x["indicator"], x["value"]) for x in within] == [(code, 5.0)]
    missing = client.get("/api/observations/latest", params={"indicator": "test.nope"}, headers=admin_headers)
    assert missing.status_code == 404


# --------------------------------------------------------------------------------------------------------------
# flags, duplicates, outbox, metrics


def test_out_of_range_is_flagged_and_kept_out_of_rollups(client: TestClient, admin_headers, session_factory) -> None:
    code = make_indicator(session_factory, min_value=0, max_value=500)
    ts = T0 + timedelta(days=3)
    before = OBSERVATIONS_INGESTED.labels("flagged")._value.get()
    result = ingest(session_factory, [row(code, ts, 10.0), row(code, ts + timedelta(minutes=1), 9999.0),
                                      row(code, ts + timedelta(minutes=2), -5.0),
                                      row(code, ts + timedelta(minutes=3), 20.0, quality=1)])
    assert (result.accepted, result.flagged) == (4, 2)
    assert OBSERVATIONS_INGESTED.labels("flagged")._value.get() - before == 2
    window = {"indicator": code, "unit": WARD, "start": iso(ts), "end": iso(ts + timedelta(hours=1))}
    raw_all = series(client, admin_headers, **window, bucket="raw", max_quality=2)["points"]
    assert [p["value"] for p in raw_all] == [10.0, 9999.0, -5.0, 20.0]
    assert [p["value"] for p in series(client, admin_headers, **window, bucket="raw")["points"]] == [10.0]
    assert [p["value"] for p in series(client, admin_headers, **window, bucket="raw", max_quality=1)["points"]] == [
        10.0, 20.0]
    assert points(client, admin_headers, **window, bucket="hour", agg="max")[0][1:] == (10.0, 1)
    with session_factory() as session:
        stored = {o.value: o.quality for o in session.scalars(
            select(Observation).where(Observation.indicator_id == indicator_id(session, code)))}
    assert stored == {10.0: 0, 9999.0: 2, -5.0: 2, 20.0: 1}
    r = client.get("/api/observations", params={**window, "bucket": "hour", "max_quality": 2}, headers=admin_headers)
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["query", "max_quality"]


def test_one_outbox_row_per_batch(session_factory) -> None:
    code = make_indicator(session_factory)
    result = ingest(session_factory, [row(code, T0 + timedelta(minutes=k), float(k)) for k in range(50)]
                    + [row(code, T0, 0.0, unit=WARD2)])
    with session_factory() as session:
        entries = list(session.scalars(select(OutboxEntry).where(OutboxEntry.aggregate_id == result.batch_id)))
    assert len(entries) == 1
    entry = entries[0]
    assert entry.topic == "observations.ingested"
    assert entry.payload["accepted"] == 51 and entry.payload["duplicates"] == 0
    assert entry.payload["indicators"] == [code] and entry.payload["units"] == [WARD, WARD2]


def test_two_batches_in_one_transaction(session_factory) -> None:
    code = make_indicator(session_factory)
    ts = T0 + timedelta(days=6)
    with transaction(session_factory) as session:
        first = service.ingest(session, actor=system_actor("test"), items=[row(code, ts, 1.0), row(code, ts, 2.0,
                                                                                                    unit=WARD2)])
        second = service.ingest(session, actor=system_actor("test"),
                                items=[row(code, ts, 9.0), row(code, ts + timedelta(minutes=1), 3.0)])
    assert (first.accepted, second.accepted, second.duplicates) == (2, 1, 1)
    with session_factory() as session:
        values = sorted(session.scalars(select(Observation.value).where(
            Observation.indicator_id == indicator_id(session, code))))
        rollup = session.scalar(select(HourlyRollup).where(HourlyRollup.indicator_id == indicator_id(session, code),
                                                           HourlyRollup.subject_id == select(Subject.id).where(
                                                               Subject.key == f"u:{WARD}").scalar_subquery()))
    assert values == [1.0, 2.0, 3.0]
    assert rollup is not None and (rollup.count, rollup.sum, rollup.last_value) == (2, 4.0, 3.0)


def test_bus_carries_the_new_rows(session_factory) -> None:
    code = make_indicator(session_factory, max_value=100)
    station = make_entity(session_factory, WARD2)
    got: list[dict[str, Any]] = []
    unsubscribe = get_bus().subscribe("observations.ingested", lambda m: got.append(m.data))
    try:
        ts = T0 + timedelta(days=5)
        ingest(session_factory, [row(code, ts, 1.0)])
        # Half of this batch is already stored: only the new rows travel.
        result = ingest(session_factory, [row(code, ts, 1.0), row(code, ts + timedelta(minutes=1), 500.0),
                                          {"indicator": code, "entity": str(station), "ts": iso(ts), "value": 7.0}])
    finally:
        unsubscribe()
    assert [m["accepted"] for m in got] == [1, 2] and got[1]["id"] == result.batch_id
    items = sorted(got[1]["items"], key=lambda i: i["value"])
    assert items == [
        {"indicator": code, "unit": WARD2, "entity": str(station), "ts": "2026-10-06T00:00:00+00:00", "value": 7.0,
         "quality": 0},
        {"indicator": code, "unit": WARD, "entity": None, "ts": "2026-10-06T00:01:00+00:00", "value": 500.0,
         "quality": 2},
    ]
    # Nothing is announced for a batch whose transaction rolls back.
    failed: list[Any] = []
    unsubscribe = get_bus().subscribe("observations.ingested", failed.append)
    try:
        with pytest.raises(RuntimeError), transaction(session_factory) as session:
            service.ingest(session, actor=system_actor("test"), items=[row(code, ts + timedelta(hours=1), 1.0)])
            raise RuntimeError("the caller fails after ingest")
    finally:
        unsubscribe()
    assert failed == []


def test_http_ingest_and_resend(client: TestClient, session_factory, make_user) -> None:
    code = make_indicator(session_factory)
    headers = make_user("operator", "68")
    body = {"items": [{"indicator": code, "unit": WARD, "ts": iso(T0 + timedelta(minutes=k)), "value": k}
                      for k in range(20)]}
    r = client.post("/api/observations", json=body, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 20 and r.json()["duplicates"] == 0 and len(r.json()["batch_id"]) == 36
    again = client.post("/api/observations", json=body, headers=headers).json()
    assert (again["accepted"], again["duplicates"]) == (0, 20)
    assert points(client, headers, indicator=code, unit=WARD, start=iso(T0), end=iso(T0 + timedelta(hours=1)),
                  agg="count")[0][1:] == (20.0, 20)


# --------------------------------------------------------------------------------------------------------------
# bad input: 4xx naming the field, nothing written


def _bad_cases(code: str, entity: str) -> list[tuple[str, dict[str, Any], list[Any]]]:
    ok = row(code, T0, 1.0)
    return [
        ("unknown indicator", {**ok, "indicator": "test.does_not_exist"}, ["items", 1, "indicator"]),
        ("unknown unit", {**ok, "unit": "99999"}, ["items", 1, "unit"]),
        ("unknown entity", {**ok, "unit": None, "entity": str(uuid.uuid4())}, ["items", 1, "entity"]),
        ("entity not an id", {**ok, "unit": None, "entity": "not-a-uuid"}, ["items", 1, "entity"]),
        ("both subjects", {**ok, "entity": entity}, ["items", 1, "entity"]),
        ("no subject", {**ok, "unit": None}, ["items", 1, "entity"]),
        ("before 1970", {**ok, "ts": "1969-12-31T23:59:59Z"}, ["items", 1, "ts"]),
        ("far future", {**ok, "ts": iso(datetime.now(UTC) + timedelta(days=2))}, ["items", 1, "ts"]),
        ("off the calendar", {**ok, "ts": "9999-12-31T23:59:59-23:00"}, ["items", 1, "ts"]),
        ("not a time", {**ok, "ts": "yesterday"}, ["items", 1, "ts"]),
        ("naive time", {**ok, "ts": "2026-10-01T00:00:00"}, ["items", 1, "ts"]),
        ("value as text", {**ok, "value": "12"}, ["items", 1, "value"]),
        ("value as bool", {**ok, "value": True}, ["items", 1, "value"]),
        ("quality 3", {**ok, "quality": 3}, ["items", 1, "quality"]),
        ("extra field", {**ok, "colour": "red"}, ["items", 1, "colour"]),
        ("missing value", {k: v for k, v in ok.items() if k != "value"}, ["items", 1, "value"]),
    ]


def test_every_bad_row_is_rejected_and_nothing_written(client: TestClient, admin_headers, session_factory) -> None:
    code = make_indicator(session_factory)
    entity = str(make_entity(session_factory, WARD))
    good = row(code, T0 + timedelta(days=9), 1.0)
    for name, bad, loc in _bad_cases(code, entity):
        before = counts(session_factory)
        r = client.post("/api/observations", json={"items": [good, bad]}, headers=admin_headers)
        assert r.status_code == 422, (name, r.text)
        locs = [e["loc"] for e in r.json()["errors"]]
        # FastAPI's own validation prefixes 'body'; the service's domain checks use the batch path.
        assert loc in locs or ["body", *loc] in locs, (name, locs)
        assert counts(session_factory) == before, name


def test_service_reports_every_row_error_at_once(session_factory) -> None:
    code = make_indicator(session_factory)
    entity = str(make_entity(session_factory, WARD))
    cases = _bad_cases(code, entity)
    items = [row(code, T0 + timedelta(days=9), 1.0)] + [bad for _, bad, _ in cases]
    before = counts(session_factory)
    with pytest.raises(ValidationFailed) as err:
        ingest(session_factory, items)
    locs = [e.loc for e in err.value.errors]
    for i, (name, _, loc) in enumerate(cases, start=1):
        assert ["items", i, loc[2]] in locs, (name, locs)
    assert not any(e.loc[1] == 0 for e in err.value.errors)  # the good row is not blamed
    assert counts(session_factory) == before


def test_nan_and_infinity_in_json_are_rejected(client: TestClient, admin_headers, session_factory) -> None:
    code = make_indicator(session_factory)
    before = counts(session_factory)
    for literal in ("NaN", "Infinity", "-Infinity"):
        item = f'{{"indicator":"{code}","unit":"{WARD}","ts":"2026-10-01T00:00:00Z","value":{literal}}}'
        body = f'{{"items":[{item}]}}'.encode()
        r = client.post("/api/observations", content=body,
                        headers={**admin_headers, "Content-Type": "application/json"})
        assert r.status_code == 422, (literal, r.text)
        assert ["body", "items", 0, "value"] in [e["loc"] for e in r.json()["errors"]]
    with pytest.raises(ValidationFailed) as err:
        ingest(session_factory, [row(code, T0, math.nan)])
    assert err.value.errors[0].loc == ["items", 0, "value"]
    assert counts(session_factory) == before


def test_batch_size_limit(client: TestClient, admin_headers, session_factory) -> None:
    code = make_indicator(session_factory)
    items = [row(code, T0 + timedelta(seconds=k), 1.0) for k in range(10_001)]
    r = client.post("/api/observations", json={"items": items}, headers=admin_headers)
    assert r.status_code == 422
    assert ["body", "items"] in [e["loc"] for e in r.json()["errors"]]
    with pytest.raises(ValidationFailed) as err:
        ingest(session_factory, items)
    assert err.value.errors[0].loc == ["items"]
    assert client.post("/api/observations", json={"items": []}, headers=admin_headers).status_code == 422


# --------------------------------------------------------------------------------------------------------------
# credentials and scope


def test_wrong_api_key_is_401(client: TestClient, session_factory) -> None:
    code = make_indicator(session_factory)
    body = {"items": [row(code, T0, 1.0)]}
    assert client.post("/api/observations", json=body).status_code == 401
    bad = {"X-API-Key": "sk_000000000000_" + "x" * 43}
    assert client.post("/api/observations", json=body, headers=bad).status_code == 401


def test_source_limited_to_its_allowed_indicators(client: TestClient, session_factory, make_source) -> None:
    code = make_indicator(session_factory)
    allowed = make_source(scope="68", allowed_writes=["observations:test.allowed*"])
    before = counts(session_factory)
    r = client.post("/api/observations", json={"items": [row(code, T0, 1.0)]}, headers=allowed)
    assert r.status_code == 403 and code in r.json()["detail"]
    assert counts(session_factory) == before
    free = make_source(scope="68", allowed_writes=[f"observations:{code.split('.')[0]}.*"])
    r = client.post("/api/observations", json={"items": [row(code, T0, 1.0)]}, headers=free)
    assert r.status_code == 200 and r.json()["accepted"] == 1
    with session_factory() as session:
        source_ids = set(session.scalars(
            select(Observation.source_id).where(Observation.indicator_id == indicator_id(session, code))))
    assert len(source_ids) == 1 and None not in source_ids


def test_writes_outside_scope_are_403(client: TestClient, session_factory, make_source, make_user) -> None:
    code = make_indicator(session_factory)
    station = str(make_entity(session_factory, OTHER))
    source = make_source(scope="68")
    operator = make_user("operator", WARD)
    cases = [(source, row(code, T0, 1.0, unit=OTHER)),
             (source, {"indicator": code, "entity": station, "ts": iso(T0), "value": 1.0}),
             (operator, row(code, T0, 1.0, unit=WARD2)),
             (operator, row(code, T0, 1.0, unit="68"))]
    for headers, bad in cases:
        before = counts(session_factory)
        r = client.post("/api/observations", json={"items": [row(code, T0, 1.0), bad]}, headers=headers)
        assert r.status_code == 403, r.text
        assert counts(session_factory) == before
    viewer = make_user("viewer", "VN")  # may read, may not write
    assert client.post("/api/observations", json={"items": [row(code, T0, 1.0)]}, headers=viewer).status_code == 403
    with transaction(session_factory) as session, pytest.raises(Forbidden):
        service.ingest(session, actor=_actor(session_factory, "68"), items=[row(code, T0, 1.0, unit=OTHER)])


def _actor(session_factory: sessionmaker[Session], scope: str) -> Actor:
    with session_factory() as session:
        path = session.scalar(text("SELECT path FROM units WHERE code = :c").bindparams(c=scope))
    return Actor(kind="user", id=None, name="tester", role="operator", scope_code=scope, scope_path=path,
                 permissions=frozenset({"observations:write", "observations:read"}))


def test_commune_staff_cannot_read_another_commune(client: TestClient, session_factory, make_user) -> None:
    code = make_indicator(session_factory)
    station = make_entity(session_factory, WARD2)
    ingest(session_factory, [row(code, T0, 1.0), row(code, T0, 2.0, unit=WARD2),
                             {"indicator": code, "entity": str(station), "ts": T0.isoformat(), "value": 3.0}])
    staff = make_user("agency_staff", WARD)
    window = {"indicator": code, "start": iso(T0), "end": iso(T0 + timedelta(hours=1)), "bucket": "raw"}
    assert points(client, staff, **window, unit=WARD)[0][1] == 1.0
    for subject in ({"unit": WARD2}, {"entity": str(station)}, {"within": "68"}, {"unit": "68"}):
        r = client.get("/api/observations", params={**window, **subject}, headers=staff)
        assert r.status_code == 404, subject
    latest = client.get("/api/observations/latest", params={"indicator": code}, headers=staff).json()
    assert [x["unit_code"] for x in latest] == [WARD]
    assert client.get("/api/observations/latest", params={"indicator": code, "within": WARD2},
                      headers=staff).status_code == 404


# --------------------------------------------------------------------------------------------------------------
# query limits and errors


def test_query_validation(client: TestClient, admin_headers, session_factory) -> None:
    code = make_indicator(session_factory)
    base = {"indicator": code, "unit": WARD}
    cases = [
        ({**base, "bucket": "minute", "start": "2026-01-01T00:00:00Z", "end": "2026-03-01T00:00:00Z"},
         ["query", "bucket"]),
        ({**base, "start": "2026-03-01T00:00:00Z", "end": "2026-01-01T00:00:00Z"}, ["query", "start"]),
        ({"indicator": code}, ["query", "unit"]),
        ({**base, "within": "68"}, ["query", "within"]),
        ({**base, "start": "2026-01-01T00:00:00"}, ["query", "start"]),
        ({**base, "bucket": "week"}, ["query", "bucket"]),
        ({**base, "start": "1900-01-01T00:00:00Z"}, ["query", "start"]),
    ]
    for params, loc in cases:
        r = client.get("/api/observations", params=params, headers=admin_headers)
        assert r.status_code == 422, (params, r.text)
        assert loc in [e["loc"] for e in r.json()["errors"]], (params, r.json())
    assert client.get("/api/observations", params={**base, "indicator": "test.unknown"},
                      headers=admin_headers).status_code == 404
    # No readings yet: an empty series over the default last 24 hours, not an error.
    empty = series(client, admin_headers, **base)
    assert empty["points"] == [] and empty["bucket"] == "hour"
    assert datetime.fromisoformat(empty["end"]) - datetime.fromisoformat(empty["start"]) == timedelta(hours=24)


def test_raw_point_limit(client: TestClient, admin_headers, session_factory) -> None:
    code = make_indicator(session_factory)
    for start in range(0, 10_001, 5_000):
        ingest(session_factory, [row(code, T0 + timedelta(seconds=k), 1.0) for k in range(start, min(start + 5_000,
                                                                                                        10_001))])
    r = client.get("/api/observations", params={"indicator": code, "unit": WARD, "bucket": "raw", "start": iso(T0),
                                                "end": iso(T0 + timedelta(days=1))}, headers=admin_headers)
    assert r.status_code == 422 and "10000" in r.json()["detail"]
    hours = points(client, admin_headers, indicator=code, unit=WARD, bucket="hour", agg="count", start=iso(T0),
                   end=iso(T0 + timedelta(days=1)))
    assert [p[1:] for p in hours] == [(3600.0, 3600), (3600.0, 3600), (2801.0, 2801)]


def test_model_input_is_accepted_as_is(session_factory) -> None:
    code = make_indicator(session_factory)
    items = [ObservationIn(indicator=code, unit=WARD, ts=T0 + timedelta(days=20), value=4.0)]
    result = ingest(session_factory, items)  # type: ignore[arg-type]
    assert result.accepted == 1
    with pytest.raises(ValueError, match="exactly one"):
        ObservationIn(indicator=code, ts=T0, value=1.0)


def _plans(session_factory: sessionmaker[Session], run) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    """(SQL, SQLite query plan) of every SELECT on observation tables that `run` executes."""
    engine = session_factory.kw["bind"]
    seen: list[tuple[str, Any]] = []

    def capture(_conn, _cursor, statement, parameters, _context, _many):  # type: ignore[no-untyped-def]
        if statement.lstrip().upper().startswith("SELECT") and "observation" in statement:
            seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        run()
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    with engine.connect() as conn:
        return [(sql, " | ".join(str(r[-1]) for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, params)))
                for sql, params in seen]


def test_sqlite_plans_use_the_primary_key_and_rollups(backend: str, session_factory) -> None:
    """Which index or rollup is behind each read: the wallboard never scans raw readings."""
    if backend != "sqlite":
        pytest.skip("EXPLAIN QUERY PLAN is SQLite's")
    code = make_indicator(session_factory)
    ingest(session_factory, [row(code, T0 + timedelta(minutes=k), float(k)) for k in range(30)])
    with session_factory() as session:
        plan = " ".join(str(r[-1]) for r in session.execute(
            text("EXPLAIN QUERY PLAN " + service._SQLITE_EXISTING.replace("?", "'[]'"))))
    assert "sqlite_autoindex_observations_1" in plan and "SCAN o" not in plan, plan

    actor = system_actor("test")
    window = {"start": T0, "end": T0 + timedelta(days=1), "indicator": code}

    def query(**params: Any) -> list[tuple[str, str]]:
        def run() -> None:
            with session_factory() as session:
                service.query_series(session, actor=actor, **window, **params)
        return [p for p in _plans(session_factory, run) if "FROM observation" in p[0]]

    for bucket, table in (("hour", "observation_rollups_hourly"), ("day", "observation_rollups_daily"),
                          ("month", "observation_rollups_daily")):
        for params in ({"unit": WARD}, {"within": "68"}):
            [(sql, plan)] = query(bucket=bucket, **params)
            assert f"FROM {table}" in sql and "FROM observations" not in sql, sql
            assert f"sqlite_autoindex_{table}_1" in plan and f"SCAN {table}" not in plan, plan
    for bucket in ("raw", "minute"):
        [(sql, plan)] = query(bucket=bucket, unit=WARD)
        assert "sqlite_autoindex_observations_1" in plan and "SCAN observations" not in plan, plan

    def latest() -> None:
        with session_factory() as session:
            service.latest(session, actor=actor, indicators=[code], within="68")
    [(sql, plan)] = [p for p in _plans(session_factory, latest) if "observation_latest" in p[0]]
    assert "SCAN observation_latest" not in plan, plan


# --------------------------------------------------------------------------------------------------------------
# the fast paths: pydantic skipped for plain rows, COPY with a savepoint, folded rollups on PostgreSQL


def test_each_bad_row_is_refused_next_to_a_good_one(session_factory) -> None:
    """The per-row checks that stand in for pydantic refuse every case pydantic refuses, one at a time."""
    code = make_indicator(session_factory)
    entity = str(make_entity(session_factory, WARD))
    good = row(code, T0 + timedelta(days=11), 1.0)
    naive = {**good, "ts": datetime(2026, 10, 1)}  # a datetime object without a zone
    cases = [*_bad_cases(code, entity), ("naive datetime", naive, ["items", 1, "ts"]),
             ("quality as bool", {**good, "quality": True}, ["items", 1, "quality"]),
             ("value as list", {**good, "value": [1.0]}, ["items", 1, "value"]),
             ("huge int", {**good, "value": 10 ** 400}, ["items", 1, "value"])]
    for name, bad, loc in cases:
        before = counts(session_factory)
        with pytest.raises(ValidationFailed) as err:
            ingest(session_factory, [good, bad])
        assert any(e.loc[:2] == loc[:2] for e in err.value.errors), (name, err.value.errors)
        assert counts(session_factory) == before, name


def test_plain_rows_keep_pydantics_conversions(session_factory) -> None:
    """Integers become floats, unit codes with spaces are trimmed, aware datetimes are taken as they are."""
    code = make_indicator(session_factory)
    ts = T0 + timedelta(days=12)
    result = ingest(session_factory, [
        {"indicator": code, "unit": WARD, "ts": ts.isoformat(), "value": 7},
        {"indicator": code, "unit": f" {WARD2} ", "ts": ts.isoformat(), "value": 8.5, "quality": 1},
        {"indicator": code, "unit": WARD, "ts": ts + timedelta(minutes=1), "value": 9.0},
    ])
    assert result.accepted == 3
    with session_factory() as session:
        values = sorted(session.scalars(select(Observation.value).where(
            Observation.indicator_id == indicator_id(session, code))))
    assert values == [7.0, 8.5, 9.0] and all(type(v) is float for v in values)


def test_big_batches_with_stored_readings_keep_rollups_exact(session_factory) -> None:
    """Batches past the small-batch size take COPY; one that repeats stored readings falls back and stays exact."""
    code = make_indicator(session_factory)
    readings = [(T0 + timedelta(days=13, minutes=k), float(k % 17)) for k in range(1500)]
    first = ingest(session_factory, [row(code, ts, v) for ts, v in readings[:900]])
    second = ingest(session_factory, [row(code, ts, v) for ts, v in readings[600:]])
    assert (first.accepted, first.duplicates) == (900, 0)
    assert (second.accepted, second.duplicates) == (600, 300)
    stored, hourly, daily, latest = _stored_series(session_factory, code)
    assert len(stored) == 1500
    _assert_rollups_of(stored, hourly, daily)
    assert latest is not None and latest.ts == readings[-1][0]


def test_queued_deltas_survive_and_fold_in_any_order(backend: str, session_factory) -> None:
    """PostgreSQL: deltas wait in a durable queue; folded late, by anyone, in any order, the rollups are exact."""
    if backend != "postgresql":
        pytest.skip("SQLite folds inside the ingest transaction")
    from saola.core.observations import rollups
    from saola.core.observations.models import rollup_queue

    code = make_indicator(session_factory)
    engine = session_factory.kw["bind"]
    rollups.settle(engine)
    # Two batches ingested, then their queue rows swapped around as if another process had died before folding.
    ingest(session_factory, [row(code, T0 + timedelta(days=14, minutes=k), float(k)) for k in range(0, 90, 2)])
    ingest(session_factory, [row(code, T0 + timedelta(days=14, minutes=k), float(k)) for k in range(1, 90, 2)])
    with engine.begin() as conn:
        queued = [r._mapping for r in conn.execute(select(rollup_queue))]
        # One queue row per batch, each holding a delta for each of the two hours its readings span.
        assert len(queued) == 2 and [len(r["hour_us"]) for r in queued] == [2, 2]
        conn.execute(rollup_queue.delete())
        conn.execute(rollup_queue.insert(), [dict(m) for m in reversed(queued)])
    rollups.folder(engine).folded = 0  # forget that this process folded anything: only the queue knows
    rollups.settle(engine)
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(rollup_queue)) == 0
    with session_factory() as session:
        ind_id = indicator_id(session, code)
        sid = session.scalar(select(Subject.id).where(Subject.key == f"u:{WARD}"))
        hourly = _stored_rollups(session, HourlyRollup, ind_id, sid)
        latest = session.get(LatestObservation, (ind_id, sid))
    start = T0 + timedelta(days=14)
    assert hourly[start][:5] == (60, float(sum(range(60))), 0.0, 59.0, 59.0)
    assert hourly[start + timedelta(hours=1)][:5] == (30, float(sum(range(60, 90))), 60.0, 89.0, 89.0)
    assert latest is not None and latest.value == 89.0


def test_background_folds_space_out_under_load_and_follow_a_pause() -> None:
    """When the fold thread folds next: never sooner than the interval after the last fold; under steady load only
    after LOAD_SPACING times the last fold's duration; once commits stop, one interval after the last commit."""
    from sqlalchemy import create_engine

    from saola.core.observations import rollups

    engine = create_engine("sqlite://", execution_options={rollups.INTERVAL_OPTION: 0.5})
    f = rollups._Folder(engine)
    f._last_fold, f.last_duration = 100.0, 0.02  # a quick fold ended at t = 100 s
    f._last_commit = 99.0
    assert f.due() == 100.5  # quiet since before the fold: one interval after it
    f._last_commit = 100.4
    assert f.due() == 100.5  # a cheap fold: the interval is the spacing
    f.last_duration = 0.3  # a fold that took 300 ms: the database is busy
    assert f.due() == pytest.approx(100.9)  # were this the last batch, it would be folded one interval on
    for commit in (100.8, 101.0, 101.15):  # but batches keep coming: wait for 4 x 300 ms after the fold
        f._last_commit = commit
        assert f.due() == pytest.approx(100.0 + rollups.LOAD_SPACING * 0.3)
    engine.dispose()


def test_reads_in_the_ingesting_process_see_their_writes(backend: str, session_factory) -> None:
    """Whatever the fold interval, an ORM read of rollups or latest values in this process folds first."""
    from saola.core.observations import rollups

    code = make_indicator(session_factory)
    engine = session_factory.kw["bind"]
    f = rollups.folder(engine)
    saved, f.interval = f.interval, 3600.0  # the background fold would come far too late for this test
    try:
        ingest(session_factory, [row(code, T0 + timedelta(days=15), 3.0)])
        with session_factory() as session:
            ind_id = indicator_id(session, code)
            got = session.scalar(select(LatestObservation.value).where(LatestObservation.indicator_id == ind_id))
            hourly = session.scalar(select(HourlyRollup.count).where(HourlyRollup.indicator_id == ind_id))
        assert got == 3.0 and hourly == 1
        assert not f.pending
    finally:
        f.interval = saved


def test_upgrading_carries_deltas_queued_in_the_old_layout_over(backend: str) -> None:
    """Migration 0302 turns queued one-row-per-delta rows into the array row, and the fold still gets them right."""
    if backend != "postgresql":
        pytest.skip("the queue is PostgreSQL's")
    from sqlalchemy import create_engine

    from saola.core.observations import rollups
    from saola.db.migrate import upgrade
    from tests.conftest import _drop_pg_database, _pg_database

    name = f"saola_test_queue_{os.getpid()}"
    url = _pg_database(name)
    engine = create_engine(url)
    try:
        upgrade(url, "0301")
        with engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO observation_rollup_queue VALUES "
                "(1, 2, '2026-12-01 17:00+00', 2, 30.0, 10.0, 20.0, '2026-12-01 17:30+00', 20.0, "
                " '2026-12-01 17:40+00', 99.0, 2, NULL), "
                "(1, 2, '2026-12-01 17:00+00', 1, 5.0, 5.0, 5.0, '2026-12-01 17:10+00', 5.0, "
                " '2026-12-01 17:10+00', 5.0, 0, 7), "
                "(1, 2, '2026-12-01 18:00+00', 0, 0.0, NULL, NULL, NULL, NULL, '2026-12-01 18:05+00', -1.0, 2, 7), "
                "(1, 2, '2026-12-01 17:00+00', 0, 0.0, NULL, NULL, NULL, NULL, '2026-12-01 17:20+00', 1e9, 2, 7)"))
        upgrade(url)
        with engine.begin() as conn:
            (queued,) = conn.execute(text("SELECT * FROM observation_rollup_queue")).mappings()
            assert queued["n"] == [2, 1, 0, 0] and queued["top_source"] == [0, 7, 7, 7]
            assert queued["lo"] == [10.0, 5.0, 0.0, 0.0]  # a bucket with no good reading has zeros, not NULLs
        assert rollups.fold(engine) == 2  # two (series, hour) keys
        with engine.connect() as conn:
            hourly = conn.execute(text(
                "SELECT bucket, count, sum, min, max, last_ts, last_value FROM observation_rollups_hourly")).all()
            daily = conn.execute(text("SELECT bucket, count, sum, min, max FROM observation_rollups_daily")).all()
            latest = conn.execute(text("SELECT ts, value, quality, source_id FROM observation_latest")).one()
        # Good readings only (the flagged-only bucket of 17:00 adds nothing, not even its zeros); the newest good one
        # is the last; the hour with none has no rollup row.
        assert [tuple(h[1:5]) for h in hourly] == [(3, 35.0, 5.0, 20.0)] and hourly[0][6] == 20.0
        assert hourly[0][0] == datetime(2026, 12, 1, 17, tzinfo=UTC) and hourly[0][5].minute == 30
        # 17:00 UTC is midnight in Hà Nội: the local day starts there.
        assert daily == [(datetime(2026, 12, 1, 17, tzinfo=UTC), 3, 35.0, 5.0, 20.0)]
        # The newest reading of any quality: 18:05, flagged, from source 7.
        assert latest == (datetime(2026, 12, 1, 18, 5, tzinfo=UTC), -1.0, 2, 7)
    finally:
        engine.dispose()
        _drop_pg_database(name)
