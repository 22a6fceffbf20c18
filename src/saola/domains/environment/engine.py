"""The AQI engine: VN_AQI, US AQI, QCVN 05 exceedances and data-quality flags, computed as readings arrive.

It follows the bus topic `observations.ingested` (like the rules engine) and keeps, per station and pollutant,
the sum and count of good readings of each of the last 48 UTC hours: an incoming batch updates those buckets
and the indices of the hours it touched are recomputed from them, never by reading history back. The indices
are written through the kernel's ingest (so rollups, the latest-value table, rules and the live stream see them)
with the time of the newest reading of their hour; a value is written again only when it changed. Each
station's dominant pollutant, sub-indices and flags go to the pack's own table.

In a server it runs on its own thread: a commit only appends its batch to a queue. A quiet stream is evaluated
and written batch by batch; under load the engine works in rounds (at most one evaluation per `evaluate_every`,
one write per `write_every`), so its cost follows the stations, not the batches, and its lag stays bounded.

Data quality: a value out of physical range is already stored as bad by the kernel (left out here); a sensor that
repeats one value `stuck_min_readings` times over `stuck_min_minutes` is "stuck" and its run is taken back out of
the buckets until it moves again; a silence longer than `gap_minutes` between two readings is logged as a gap.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from saola.bus import InProcessBus, Message, get_bus
from saola.core.auth.context import system_actor
from saola.core.entities.models import Entity
from saola.core.indicators.models import Indicator
from saola.core.observations import service as observations
from saola.core.observations.live import LiveReadings
from saola.core.observations.models import HourlyRollup, LatestObservation, Subject
from saola.db.engine import transaction
from saola.db.upsert import upsert_rows
from saola.domains.environment import aqi
from saola.domains.environment.models import QualityFlag, StationState
from saola.domains.environment.params import (
    AQI_US,
    AQI_US_DAY,
    AQI_VN,
    AQI_VN_DAY,
    DERIVED,
    ENTITY_TYPE,
    QCVN05_OF_CODE,
    QCVN_EXCEEDANCES,
    SENSORS_STUCK,
)
from saola.domains.environment.standards import Standards, load_standards

log = logging.getLogger(__name__)

KEEP_HOURS = 48
WRITE_EVERY = 1.0  # seconds: under load, derived readings and station states are written at most this often
EVALUATE_EVERY = 1.0  # seconds: under load, batches arriving closer than this are evaluated together
_DERIVED = frozenset(DERIVED)
SLOW_EVERY = 600.0  # seconds of data time between refreshes of a station's daily index and QCVN 05 check
VN = 7 * 3600
STUCK_EXEMPT = frozenset({"env.rainfall", "env.wind_direction"})  # zero rain for days is weather, not a fault


def _hour(ts: float) -> int:
    return int(ts // 3600)


def _day(hour: int) -> int:
    """The local (UTC+7) day number of a UTC hour."""
    return (hour * 3600 + VN) // 86400


def _day_start_hour(day: int) -> int:
    return (day * 86400 - VN) // 3600


@dataclass(slots=True)
class Run:
    """A sensor's current run of one repeated value."""

    value: float
    start: float
    last: float
    count: int = 1
    hours: list[tuple[int, float]] = field(default_factory=list)  # bucket contributions, to take back when stuck
    stuck: bool = False


@dataclass(slots=True)
class Station:
    """What the engine remembers of one station."""

    entity: str
    unit: str
    hours: dict[str, dict[int, list[float]]] = field(default_factory=dict)  # pollutant -> hour -> [sum, n]
    # pollutant -> hour -> sum / n, kept beside the buckets (hours without a good reading absent), so that a
    # series is one C-level map over the hours instead of a division per hour per evaluation
    means: dict[str, dict[int, float]] = field(default_factory=dict)
    newest_in_hour: dict[int, float] = field(default_factory=dict)  # hour -> newest reading time in it
    runs: dict[str, Run] = field(default_factory=dict)
    last_seen: dict[str, float] = field(default_factory=dict)
    written: dict[str, tuple[float, int]] = field(default_factory=dict)  # code -> (value, hour or day)
    current: dict[str, tuple[int, int, float]] = field(default_factory=dict)  # code -> (value, period, time)
    state_signature: tuple[Any, ...] = ()
    slow: tuple[Any, ...] | None = None  # (hour, time, day VN, day US, exceedances) last computed
    stuck: set[str] = field(default_factory=set)
    uid: uuid.UUID | None = None

    def __post_init__(self) -> None:
        self.uid = uuid.UUID(self.entity)

    def mean(self, pollutant: str, hour: int) -> float | None:
        """The mean of the good readings of an hour, or None."""
        return self.means.get(pollutant, {}).get(hour)

    def series(self, pollutant: str, end: int, n: int) -> list[float | None]:
        """n hourly means ending with hour `end`, oldest first."""
        means = self.means.get(pollutant)
        if not means:
            return [None] * n
        return list(map(means.get, range(end - n + 1, end + 1)))

    def put(self, pollutant: str, hour: int, total: float, count: float) -> None:
        """Set an hour's bucket (sum and count of good readings) and its mean."""
        self.hours.setdefault(pollutant, {})[hour] = [total, count]
        self.set_mean(pollutant, hour, total, count)

    def add(self, pollutant: str, hour: int, ts: float, value: float) -> None:
        """Add a good reading to its hour's bucket and mean (hours older than KEEP_HOURS dropped)."""
        buckets = self.hours.get(pollutant)
        if buckets is None:
            buckets = self.hours[pollutant] = {}
            self.means[pollutant] = {}
        means = self.means[pollutant]
        bucket = buckets.get(hour)
        if bucket is None:
            buckets[hour] = [value, 1]
            means[hour] = value / 1
            horizon = hour - KEEP_HOURS
            for old in [h for h in buckets if h < horizon]:
                del buckets[old]
                means.pop(old, None)
        else:
            bucket[0] += value
            bucket[1] += 1
            if bucket[1] > 0:
                means[hour] = bucket[0] / bucket[1]
            else:
                means.pop(hour, None)
        newest = self.newest_in_hour
        if ts > newest.get(hour, 0.0):
            newest[hour] = ts
            if len(newest) > KEEP_HOURS + 24:
                for old in sorted(newest)[:-KEEP_HOURS]:
                    del newest[old]

    def set_mean(self, pollutant: str, hour: int, total: float, count: float) -> None:
        """Refresh the mean of an hour after its bucket changed."""
        means = self.means.setdefault(pollutant, {})
        if count > 0:
            means[hour] = total / count
        else:
            means.pop(hour, None)


@dataclass
class Outcome:
    """What one batch produced: derived readings, state rows and flags to write."""

    items: list[dict[str, Any]] = field(default_factory=list)
    states: dict[str, dict[str, Any]] = field(default_factory=dict)
    flags: list[dict[str, Any]] = field(default_factory=list)
    flag_ends: list[tuple[str, str, datetime]] = field(default_factory=list)


def _pause() -> None:
    """Let another thread have the interpreter now. The engine is background work: without this, a writer whose
    database call returns while the engine computes waits for the interpreter's switch interval (5 ms) each
    time, and an ingest makes dozens of such calls per batch; a pause every millisecond or so of work (16
    stations, 256 readings) makes that wait that short instead. Not more often: a pause may also give the
    processor to another process for a while."""
    time.sleep(0)


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


class AqiEngine:
    """Per-station hourly buckets and the bus handler that keeps the indices current."""

    def __init__(self, session_factory: sessionmaker[Session], standards: Standards | None = None, *,
                 write_every: float = WRITE_EVERY, evaluate_every: float = EVALUATE_EVERY) -> None:
        self.session_factory = session_factory
        self.standards = standards or load_standards()
        quality = self.standards.quality
        self.stuck_n = int(quality.get("stuck_min_readings", 6))
        self.stuck_s = float(quality.get("stuck_min_minutes", 60)) * 60
        self.stuck_tol = float(quality.get("stuck_tolerance", 1e-9))
        self.gap_s = float(quality.get("gap_minutes", 90)) * 60
        self.stations: dict[str, Station] = {}
        self.lock = threading.RLock()
        self.bus: Any = None
        # batches: evaluations (rounds) that had station readings; cpu_s: the engine thread's CPU time (write_cpu_s
        # of it writing); write_s, lock_s: the wall time of its writes, and of waiting for SQLite's write lock
        self.stats: dict[str, Any] = {"batches": 0, "items": 0, "written": 0, "errors": 0, "cpu_s": 0.0,
                                      "write_s": 0.0, "write_cpu_s": 0.0, "lock_s": 0.0, "transactions": 0}
        self._unsubscribe: Callable[[], None] | None = None
        self._known: dict[str, bool] = {}  # entity id -> is an environment station
        self._limits: dict[int, dict[str, dict[str, float]]] = {}  # local day -> QCVN 05 limits in force
        # Batches wait here for the engine's thread: the writer's commit only appends (time handed in, rows), and
        # when batches come faster than they are evaluated, the thread takes several at once and evaluates each
        # station once.
        self._queue: deque[tuple[float, Sequence[Mapping[str, Any]]]] = deque()
        self._cv = threading.Condition()
        self._handed = 0  # batches handed in
        self._done = 0  # batches evaluated
        self._written_through = 0  # batches whose results are all written
        self._thread: threading.Thread | None = None
        self._running = False
        # Derived readings and station states wait here and are written together, at most every `write_every`
        # seconds, at once with a flag, or when someone waits for the engine: under load one transaction then
        # serves many batches (on SQLite each one also holds the single write lock). A quiet stream gets each
        # batch's results written at once.
        self.write_every = write_every
        # A batch arriving after a quiet spell is evaluated at once; one arriving less than `evaluate_every`
        # seconds after the last evaluation began waits for the rest of that interval, and whatever came in the
        # meantime is evaluated with it (each station once, all the readings folded in first, in order).
        self.evaluate_every = evaluate_every
        self._evaluated_at = float("-inf")
        self._pending: dict[str, dict[str, Any]] = {}  # station -> newest state row
        self._pending_items: dict[tuple[Any, ...], dict[str, Any]] = {}  # (indicator, station, time) -> reading
        self._flushed_at = float("-inf")
        self._flush_asked = False
        self.lags: deque[float] = deque(maxlen=100_000)  # seconds from a batch's hand-in to the end of its round

    # -- lifecycle ------------------------------------------------------------------------------------------

    def start(self, *, restore: bool = True, threaded: bool = True) -> AqiEngine:
        """Restore the last hours from the hourly rollups (once), then follow the bus (on a thread of its own
        unless threaded=False, when each batch is evaluated in the committing thread)."""
        if restore:
            self.restore()
        self.bus = get_bus()
        if threaded:
            self._running = True
            self._thread = threading.Thread(target=self._work, name="saola-environment", daemon=True)
            self._thread.start()
        self._unsubscribe = self.bus.subscribe("observations.ingested",
                                               self._hand_in if threaded else self.on_message)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop following the bus; what was handed in is evaluated first."""
        if self._unsubscribe:
            self._unsubscribe()
            self._unsubscribe = None
        if self._thread is not None:
            self.wait_idle(timeout)
            with self._cv:
                self._running = False
                self._cv.notify_all()
            self._thread.join(timeout)
            self._thread = None

    def _hand_in(self, message: Message) -> None:
        """Bus handler on the writer's side: hand the batch's rows to the engine's thread (picking out the
        stations' readings is that thread's work, not the writer's)."""
        items = message.data.get("items")
        if not items:
            return
        with self._cv:
            self._queue.append((time.monotonic(), items))
            self._handed += 1
            self._cv.notify_all()

    def _next_round(self) -> float | None:
        """Seconds until the engine's thread has work (0: now; None: nothing to do until woken)."""
        now = time.monotonic()
        waits = []
        if self._queue:
            waits.append(0.0 if self._flush_asked or not self._running
                         else self._evaluated_at + self.evaluate_every - now)
        if self._pending or self._pending_items:
            waits.append(0.0 if self._flush_asked or not self._running else self._flushed_at + self.write_every - now)
        return max(0.0, min(waits)) if waits else None

    def _work(self) -> None:
        while True:
            with self._cv:
                while self._running and (wait := self._next_round()) != 0.0:
                    self._cv.wait(wait)
                if not self._running and not self._queue and not self._pending and not self._pending_items:
                    return
                taken = list(self._queue)
                self._queue.clear()
                force = self._flush_asked or not self._running
                self._flush_asked = False
                if taken:
                    self._evaluated_at = time.monotonic()
            cpu = time.thread_time()
            try:
                outcome = self.process([it for _, batch in taken for it in batch]) if taken else None
                started, write_cpu = time.perf_counter(), time.thread_time()
                self.write(outcome, force=force)
                self.stats["write_s"] += time.perf_counter() - started
                self.stats["write_cpu_s"] += time.thread_time() - write_cpu
            except Exception:
                self.stats["errors"] += 1
                log.exception("environment: computing indices for %d batch(es) failed", len(taken))
            finished = time.monotonic()
            self.stats["cpu_s"] += time.thread_time() - cpu
            with self._cv:
                self.lags.extend(finished - handed for handed, _ in taken)
                self._done += len(taken)
                if not self._pending and not self._pending_items:
                    self._written_through = self._done
                self._cv.notify_all()

    def wait_idle(self, timeout: float | None = 10.0) -> bool:
        """Block until every batch handed in before this call is evaluated and written, station states included
        (True), or the timeout passed (False); True at once when the engine evaluates in the committing thread."""
        if self._thread is None or threading.current_thread() is self._thread:
            return True
        with self._cv:
            target = self._handed
            if self._written_through >= target:
                return True
            self._flush_asked = True  # evaluate and write what waits now, not when it is due
            self._cv.notify_all()
            return self._cv.wait_for(lambda: self._written_through >= target or self._thread is None, timeout)

    def backlog(self) -> int:
        """Batches handed in and not evaluated yet."""
        with self._cv:
            return self._handed - self._done

    def restore(self, now: datetime | None = None) -> None:
        """Fill the buckets of the last 48 hours from the kernel's hourly rollups (good readings only)."""
        since = (now or datetime.now(UTC)) - timedelta(hours=KEEP_HOURS)
        codes = list(QCVN05_OF_CODE)
        with self.session_factory() as session:
            rows = session.execute(
                select(Indicator.code, Subject.entity_id, Subject.unit_code, HourlyRollup.bucket, HourlyRollup.sum,
                       HourlyRollup.count, HourlyRollup.last_ts)
                .join(Indicator, Indicator.id == HourlyRollup.indicator_id)
                .join(Subject, Subject.id == HourlyRollup.subject_id)
                .join(Entity, Entity.id == Subject.entity_id)
                .where(Indicator.code.in_(codes), HourlyRollup.bucket >= since,
                       Entity.type.in_(list(ENTITY_TYPE.values()))))
            with self.lock:
                for code, entity_id, unit, bucket, total, count, last_ts in rows:
                    st = self._station(str(entity_id), unit)
                    hour = _hour(bucket.timestamp())
                    st.put(QCVN05_OF_CODE[code], hour, total, count)
                    t = last_ts.timestamp()
                    if t > st.newest_in_hour.get(hour, 0):
                        st.newest_in_hour[hour] = t
                    self._known[str(entity_id)] = True
            # Sensors stuck when the process stopped stay stuck until they move (not re-learnt from scratch).
            stuck = session.execute(select(StationState.entity_id, StationState.stuck, Entity.unit_code)
                                    .join(Entity, Entity.id == StationState.entity_id)).all()
            for entity_id, codes, unit in stuck:
                if not codes:
                    continue
                latest = dict(session.execute(
                    select(Indicator.code, LatestObservation.value).join(
                        Indicator, Indicator.id == LatestObservation.indicator_id)
                    .join(Subject, Subject.id == LatestObservation.subject_id)
                    .where(Subject.entity_id == entity_id, Indicator.code.in_(list(codes)))).all())
                with self.lock:
                    st = self._station(str(entity_id), unit)
                    for code in codes:
                        if code in latest:
                            st.runs[code] = Run(latest[code], 0.0, 0.0, self.stuck_n, stuck=True)
                            st.stuck.add(code)

    def _station(self, entity: str, unit: str) -> Station:
        st = self.stations.get(entity)
        if st is None:
            st = self.stations[entity] = Station(entity, unit)
        return st

    # -- the stream -----------------------------------------------------------------------------------------

    def on_message(self, message: Message) -> None:
        """Bus handler: take the batch's station readings in, write what changed."""
        items = message.data.get("items")
        if not items:
            return
        try:
            outcome = self.process(items)
            if outcome is not None:
                self.write(outcome)
        except Exception:
            self.stats["errors"] += 1
            log.exception("environment: computing indices for a batch failed")

    def _stations_only(self, entities: Iterable[str]) -> set[str]:
        """The entity ids that are environment stations (looked up once per entity)."""
        unknown = [e for e in entities if e not in self._known]
        if unknown:
            ids = []
            for e in unknown:
                try:
                    ids.append(uuid.UUID(e))
                except ValueError:
                    self._known[e] = False
            with self.session_factory() as session:
                found = set(session.scalars(select(Entity.id).where(
                    Entity.id.in_(ids), Entity.type.in_(list(ENTITY_TYPE.values())))))
            for i in ids:
                self._known[str(i)] = i in found
        return {e for e in entities if self._known.get(e)}

    def process(self, items: Sequence[Mapping[str, Any]]) -> Outcome | None:
        """Fold a batch of new readings into the buckets and compute the indices of the hours it touched."""
        if isinstance(items, LiveReadings):  # picked a series at a time
            relevant = items.where(lambda code, _unit, entity: bool(entity) and code.startswith("env.")
                                   and code not in _DERIVED)
        else:
            relevant = [it for it in items if it.get("entity") and str(it["indicator"]).startswith("env.")
                        and it["indicator"] not in _DERIVED]
        if not relevant:
            return None
        stations = self._stations_only({it["entity"] for it in relevant})
        if not stations:
            return None
        out = Outcome()
        touched: dict[str, set[int]] = {}
        known = self.stations
        with self.lock:
            self.stats["batches"] += 1
            self.stats["items"] += self._take_all(relevant, stations, touched, out)
            for n, (entity, hours) in enumerate(touched.items(), start=1):
                if hours:  # a station whose readings were all left out (stuck, out of range) has nothing new
                    self._evaluate(known[entity], sorted(hours), out)
                if not n & 15:
                    _pause()
        return out

    def _take_all(self, relevant: Sequence[Mapping[str, Any]], stations: set[str], touched: dict[str, set[int]],
                  out: Outcome) -> int:
        """Fold the readings of the stations into their buckets (see _take); returns how many were taken.

        The common reading, a good value of an AQI pollutant from a sensor that moved since its last reading
        and came in time, is handled here inline; anything else (flags, stuck runs, late readings, other
        parameters) goes through _take. Both do the same to that common reading.
        """
        known, times, take, gap, tol = self.stations, {}, self._take, self.gap_s, self.stuck_tol
        pollutant_of = QCVN05_OF_CODE
        taken = 0
        for it in relevant:
            entity = it["entity"]
            if entity not in stations:
                continue
            taken += 1
            if not taken & 255:
                _pause()
            hours = touched.get(entity)
            if hours is None:
                hours = touched[entity] = set()
            st = known.get(entity) or self._station(entity, it["unit"])
            code = it["indicator"]
            pollutant = pollutant_of.get(code)
            if pollutant is None or it.get("quality", 0) != 0 or code in STUCK_EXEMPT:
                take(st, it, hours, out, times)
                continue
            ts_text = it["ts"]
            ts = times.get(ts_text)
            if ts is None:  # a batch's readings share few distinct times: each is parsed once
                ts = times[ts_text] = (ts_text.timestamp() if isinstance(ts_text, datetime)
                                       else datetime.fromisoformat(ts_text).timestamp())
            value = it["value"]
            prev = st.last_seen.get(code)
            run = st.runs.get(code)
            if ((prev is not None and ts - prev > gap)
                    or (run is not None and (run.stuck or ts <= run.last or abs(value - run.value) <= tol))):
                take(st, it, hours, out, times)
                continue
            if prev is None or ts > prev:
                st.last_seen[code] = ts
            hour = int(ts // 3600)
            if run is None:
                st.runs[code] = Run(value, ts, ts, hours=[(hour, value)])
            else:  # a new run: the old object, reset
                run.value, run.start, run.last, run.count = value, ts, ts, 1
                run.hours = [(hour, value)]
            hours.add(hour)
            buckets = st.hours.get(pollutant)
            bucket = buckets.get(hour) if buckets is not None else None
            if bucket is None or bucket[1] <= 0:  # a new hour, or a bucket emptied by a stuck run
                st.add(pollutant, hour, ts, value)
                continue
            # Station.add, inline for the reading that goes to an hour already open (most of them)
            bucket[0] += value
            bucket[1] += 1
            st.means[pollutant][hour] = bucket[0] / bucket[1]
            newest = st.newest_in_hour
            if ts > newest.get(hour, 0.0):
                newest[hour] = ts
                if len(newest) > KEEP_HOURS + 24:
                    for old in sorted(newest)[:-KEEP_HOURS]:
                        del newest[old]
        return taken

    def _take(self, st: Station, it: Mapping[str, Any], touched: set[int], out: Outcome,
              times: dict[Any, float]) -> None:
        """Fold one reading into its station's buckets and runs; the hours whose indices it changed go to
        `touched`."""
        code, value, quality = it["indicator"], it["value"], it.get("quality", 0)
        ts_text = it["ts"]
        ts = times.get(ts_text)
        if ts is None:  # a batch's readings share few distinct times: each is parsed once
            ts = times[ts_text] = (ts_text.timestamp() if isinstance(ts_text, datetime)
                                   else datetime.fromisoformat(ts_text).timestamp())
        if quality == 2:
            out.flags.append({"entity_id": st.uid, "indicator": code, "kind": "range",
                              "started_at": _dt(ts), "ended_at": _dt(ts), "value": value})
            return
        prev = st.last_seen.get(code)
        if prev is not None and ts - prev > self.gap_s:
            out.flags.append({"entity_id": st.uid, "indicator": code, "kind": "gap",
                              "started_at": _dt(prev), "ended_at": _dt(ts), "value": None})
        if prev is None or ts > prev:
            st.last_seen[code] = ts
        pollutant = QCVN05_OF_CODE.get(code)
        hour = int(ts // 3600)  # _hour, inline: this runs for every reading
        if code not in STUCK_EXEMPT and quality == 0:
            run = st.runs.get(code)
            if run is not None and ts > run.last and abs(value - run.value) <= self.stuck_tol:
                run.count += 1
                run.last = ts
                if run.stuck:
                    return  # left out of the indices while the sensor stays stuck
                if pollutant:
                    run.hours.append((hour, value))
                if run.count >= self.stuck_n and run.last - run.start >= self.stuck_s:
                    run.stuck = True
                    st.stuck.add(code)
                    out.flags.append({"entity_id": st.uid, "indicator": code, "kind": "stuck",
                                      "started_at": _dt(run.start), "ended_at": None, "value": value})
                    for h, v in run.hours[:-1]:  # the last one is this reading, not added yet
                        bucket = st.hours.get(pollutant or "", {}).get(h)
                        if bucket:
                            bucket[0] -= v
                            bucket[1] -= 1
                            st.set_mean(pollutant or "", h, bucket[0], bucket[1])
                            touched.add(h)
                    run.hours = []
                    touched.add(hour)
                    return
            elif run is None or ts > run.last:
                if run is not None and run.stuck:
                    st.stuck.discard(code)
                    out.flag_ends.append((st.entity, code, _dt(ts)))
                    touched.add(hour)
                if run is None:
                    st.runs[code] = Run(value, ts, ts, hours=[(hour, value)] if pollutant else [])
                else:  # a new run: the old object, reset (one allocation less per moving reading)
                    run.value, run.start, run.last, run.count, run.stuck = value, ts, ts, 1, False
                    run.hours = [(hour, value)] if pollutant else []
        if quality != 0 or pollutant is None:
            return
        st.add(pollutant, hour, ts, value)
        touched.add(hour)

    def indices(self, st: Station, hour: int, *, daily: bool = True, current: bool = True) -> dict[str, Any]:
        """The indices of a station for one hour, from its buckets (the day's and the limits' when asked)."""
        # The hourly indices look 12 hours back; the day's and the limits' the hour, the 23 before it in its day
        # at most, and 8 more for the day's first 8-hour means.
        span = 32 if daily or current else 12
        table = {p: st.series(p, hour, span) for p in aqi.POLLUTANTS if p in st.hours}
        series = table if span == 12 else {p: values[-12:] for p, values in table.items()}
        nowcasts = {p: aqi.nowcast(series[p]) for p in aqi.PM if p in series}  # the same for both schemes
        out: dict[str, Any] = {"vn": aqi.vn_hourly(series, nowcasts), "us": aqi.us_hourly(series, nowcasts=nowcasts),
                               "day": _day(hour), "vn_day": None, "us_day": None, "exceedances": []}
        if daily:
            first = span - 1 - (hour - _day_start_hour(out["day"]))  # index of the day's first hour in the table
            days = {p: aqi.day_values(p, values[first:], values[first - 7:first]) for p, values in table.items()}
            out["vn_day"], out["us_day"] = aqi.vn_daily(days), aqi.us_daily(days)
        if current:
            tsp = {"tsp": st.series("tsp", hour, 24)} if "tsp" in st.hours else {}
            out["exceedances"] = self.exceedances({**{p: v[-24:] for p, v in table.items()}, **tsp}, hour)
        return out

    def exceedances(self, last24: Mapping[str, Sequence[float | None]], hour: int) -> list[dict[str, Any]]:
        """QCVN 05 limits exceeded now: the hour's mean (1 h), the last 8 hours (8 h), the last 24 hours (24 h),
        from each parameter's last 24 hourly means (oldest first)."""
        day = _day(hour)
        limits = self._limits.get(day)
        if limits is None:
            limits = self._limits[day] = self.standards.air_limits(
                date.fromordinal(date(1970, 1, 1).toordinal() + day))
        found = []
        for p, series in last24.items():
            for averaging, n, need in (("1h", 1, 1), ("8h", 8, 6), ("24h", 24, 18)):
                limit = limits.get(p, {}).get(averaging)
                if limit is None:
                    continue
                values = [v for v in series[-n:] if v is not None]
                if len(values) < need:
                    continue
                mean = sum(values) / len(values)
                if mean > limit:
                    found.append({"parameter": p, "averaging": averaging, "value": round(mean, 1), "limit": limit})
        return sorted(found, key=lambda e: (e["parameter"], e["averaging"]))

    def _offer(self, st: Station, code: str, value: int | None, key: int, ts: float, out: Outcome,
               banded: bool) -> None:
        """Decide whether a computed index is written: a new hour (or day) always; within one, an index only
        when its band changes (so a rule on a band edge sees the crossing at once) and a count when it changes;
        and when a period ends, its final value if that differs from what was written for it."""
        if value is None:
            return
        current = st.current.get(code)
        written = st.written.get(code)
        if current is not None and current[1] < key and written != (current[0], current[1]):
            out.items.append({"indicator": code, "entity": st.entity, "ts": _dt(current[2]),
                              "value": float(current[0])})
            written = st.written[code] = (current[0], current[1])
        if current is None or key >= current[1]:
            st.current[code] = (value, key, ts)
        if written is not None and written[1] == key:
            if written[0] == value:
                return
            if banded and aqi.level_of(int(written[0])) == aqi.level_of(value):
                return
        elif written is not None and written[1] > key:
            return  # an older period, already closed
        st.written[code] = (value, key)
        out.items.append({"indicator": code, "entity": st.entity, "ts": _dt(ts), "value": float(value)})

    def _evaluate(self, st: Station, hours: list[int], out: Outcome) -> None:
        newest_hour = max(st.newest_in_hour) if st.newest_in_hour else hours[-1]
        last_of_day = {}
        for h in hours:
            # Only hours holding good readings count: one touched by a stuck run alone has none and is skipped
            # below, so the day's value must come with the last hour that is evaluated (else the newest hour
            # would have no daily index at all).
            if h in st.newest_in_hour:
                last_of_day[_day(h)] = h
        for h in hours:
            if h < newest_hour - KEEP_HOURS + 12:
                continue  # too old to hold 12 hours of history here; its indices were written when it was new
            ts = st.newest_in_hour.get(h)
            if ts is None:
                continue
            day_end = last_of_day[_day(h)] == h  # a day's running value only once per batch and day
            # The day's indices and the limits move slowly: within an hour, refresh them every 10 minutes of data.
            fresh = h != newest_hour or st.slow is None or st.slow[0] != h or ts - st.slow[1] >= SLOW_EVERY
            result = self.indices(st, h, daily=day_end and fresh, current=h == newest_hour and fresh)
            if h == newest_hour:
                if fresh:
                    st.slow = (h, ts, result["vn_day"], result["us_day"], result["exceedances"])
                else:
                    result["vn_day"], result["us_day"], result["exceedances"] = st.slow[2:]
                day_end = day_end and fresh
            self._offer(st, AQI_VN, result["vn"].aqi, h, ts, out, True)
            self._offer(st, AQI_US, result["us"].aqi, h, ts, out, True)
            if day_end:
                self._offer(st, AQI_VN_DAY, result["vn_day"].aqi, result["day"], ts, out, True)
                self._offer(st, AQI_US_DAY, result["us_day"].aqi, result["day"], ts, out, True)
            if h != newest_hour:
                continue
            self._offer(st, QCVN_EXCEEDANCES, len(result["exceedances"]), 0, ts, out, False)
            self._offer(st, SENSORS_STUCK, len(st.stuck), 0, ts, out, False)
            vn, us, vn_day = result["vn"], result["us"], result["vn_day"]
            stuck = tuple(sorted(st.stuck))
            signature = (vn.aqi, vn.dominant, us.aqi, vn_day.aqi, result["us_day"].aqi, stuck,
                         len(result["exceedances"]), h)
            if signature != st.state_signature:  # the same figures again: nothing to write (nor to build)
                st.state_signature = signature
                out.states[st.entity] = {
                    "entity_id": st.uid, "aqi_vn": vn.aqi, "aqi_vn_level": vn.level, "dominant": vn.dominant,
                    "aqi_us": us.aqi, "aqi_vn_day": vn_day.aqi, "aqi_us_day": result["us_day"].aqi,
                    "aqi_ts": _dt(ts),
                    "details": {"sub_indices": vn.sub_indices, "concentrations": vn.concentrations,
                                "us_sub_indices": us.sub_indices, "day_sub_indices": vn_day.sub_indices,
                                "hour": _dt(h * 3600).isoformat()},
                    "stuck": list(stuck), "exceedances": result["exceedances"], "updated_at": datetime.now(UTC)}

    def write(self, outcome: Outcome | None, *, force: bool = True) -> None:
        """Write derived readings (through the kernel's ingest), station states and flags in one transaction.

        The outcome's readings and states join those waiting since the last write (a station's newest state
        wins; of two readings of one index at one time the one computed first, as if it had been written first
        and the second refused as a duplicate). Everything waiting is written when `force`, when the outcome has
        flags, or when `write_every` seconds passed since the last write; else it keeps waiting.
        """
        with self.lock:
            urgent = outcome is not None and bool(outcome.flags or outcome.flag_ends)
            if outcome is not None:
                self._pending.update(outcome.states)
                batch: dict[tuple[Any, ...], dict[str, Any]] = {}
                for item in outcome.items:  # within one evaluation the later value wins, as the kernel's ingest does
                    batch[(item["indicator"], item["entity"], item["ts"])] = item
                for key, item in batch.items():
                    self._pending_items.setdefault(key, item)
            if not (urgent or ((self._pending or self._pending_items)
                               and (force or time.monotonic() - self._flushed_at >= self.write_every))):
                return
            # Taken out before writing: what cannot be written (its station just deleted) must not block every
            # later write.
            states, self._pending = self._pending, {}
            items, self._pending_items = list(self._pending_items.values()), {}
            self._flushed_at = time.monotonic()
        flags = outcome.flags if outcome is not None else []
        flag_ends = outcome.flag_ends if outcome is not None else []
        asked = time.perf_counter()
        with transaction(self.session_factory) as session:
            self.stats["transactions"] += 1
            self.stats["lock_s"] += time.perf_counter() - asked  # waiting for SQLite's write lock, mostly
            if items:
                for s in range(0, len(items), 10_000):
                    observations.ingest(session, actor=system_actor("environment"), items=items[s:s + 10_000])
                self.stats["written"] += len(items)
            if states:
                upsert_rows(session, StationState.__table__, list(states.values()), key=["entity_id"],
                            update=[c for c in states[next(iter(states))] if c != "entity_id"])
            if flags:
                session.execute(QualityFlag.__table__.insert(), flags)
            for entity, code, at in flag_ends:
                open_flag = session.scalars(
                    select(QualityFlag).where(QualityFlag.entity_id == uuid.UUID(entity),
                                              QualityFlag.indicator == code, QualityFlag.kind == "stuck",
                                              QualityFlag.ended_at.is_(None))).all()
                for flag in open_flag:
                    flag.ended_at = at


# ---------------------------------------------------------------------------------------------------------------
# one engine per process, bound to the application's database (like the rules engine)

_engine: AqiEngine | None = None
_engine_lock = threading.Lock()


def wait_idle(timeout: float | None = 10.0) -> bool:
    """Wait until the running engine has evaluated and written every batch committed before this call."""
    engine = _engine
    return True if engine is None else engine.wait_idle(timeout)


def start_engine(session_factory: sessionmaker[Session], *, restore: bool = True) -> AqiEngine:
    """The process's engine for this database and bus, started once (another database or bus replaces it)."""
    global _engine
    with _engine_lock:
        if _engine is not None and _engine.session_factory is session_factory and _engine.bus is get_bus():
            return _engine
        if _engine is not None:
            _engine.stop()
        _engine = AqiEngine(session_factory).start(restore=restore)
        return _engine


def start_for_server(session_factory: sessionmaker[Session], run_jobs: bool) -> AqiEngine | None:
    """In a server: always on the in-process bus; on a shared bus only where the scheduled jobs run."""
    if not run_jobs and not isinstance(get_bus(), InProcessBus):
        return None
    return start_engine(session_factory)


def get_engine() -> AqiEngine | None:
    """The running engine, if any."""
    return _engine


def stop_engine() -> None:
    """Stop the running engine."""
    global _engine
    with _engine_lock:
        if _engine is not None:
            _engine.stop()
            _engine = None
