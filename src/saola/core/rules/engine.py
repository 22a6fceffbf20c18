"""The rules engine: evaluates rules in memory on the live stream, never by polling the database.

It subscribes to the bus: `observations.ingested` and `events.ingested` carry the new rows of each committed batch
(`items`), so evaluation happens right after the writer's commit, and alert changes are written in their own
transaction. Rules are compiled and indexed by indicator code (or event type) and by the unit they are scoped to,
so an item costs a few dictionary lookups whatever the number of rules; `rules.*` messages reload them.

Each (rule, subject) keeps a small state: whether the condition is active (with hysteresis and a minimum
duration in data time), whether an alert is open, the recent state changes (flapping: more than `flap_limit`
changes within `flap_window_seconds` holds the alert open until the subject is stable again), and the window of
recent values (rate of change) or event times (event count). Silence and the expiry of event counts depend on the
clock: a scheduled job calls `tick(now)`.
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from saola.bus import InProcessBus, Message, get_bus, parse_id
from saola.core.alerts import service as alerts
from saola.core.alerts.models import Alert
from saola.core.entities.models import Entity
from saola.core.events.schemas import SEVERITIES
from saola.core.indicators.models import Indicator, IndicatorTarget
from saola.core.observations.live import LiveReadings
from saola.core.observations.models import LatestObservation, Subject
from saola.core.rules.models import Rule
from saola.core.rules.schemas import PARAMS_MODELS
from saola.core.units.models import Unit
from saola.db.types import utcnow

if TYPE_CHECKING:
    from saola.config import Settings
    from saola.packs.definitions import ScheduledJob

log = logging.getLogger(__name__)

NEG_INF = float("-inf")
TARGET_TTL_SECONDS = 300.0
MAX_PENDING_ITEMS = 500_000  # rows waiting for the engine before writers are held back (memory bound)
MAX_MESSAGES_PER_WRITE = 64  # batches evaluated together and written in one transaction when the engine is behind
MAX_CANDIDATES = 200_000  # remembered (indicator, unit) -> rules answers before the cache starts over


@dataclass(slots=True)
class State:
    """What the engine remembers about one subject of one rule."""

    unit: str
    entity: str | None
    active: bool = False
    pending_since: float | None = None
    alert_open: bool = False
    suppressed: bool = False  # resolved by hand while the condition still held: wait until it clears
    flapping: bool = False  # as written on the open alert
    changes: deque[float] = field(default_factory=deque)
    last_ts: float = NEG_INF
    last_value: float | None = None
    window: Any = None  # rate of change: deque of (ts, value); event count: sorted list of times


@dataclass(slots=True)
class Compiled:
    """A rule ready to evaluate."""

    id: uuid.UUID
    name: str
    kind: str
    severity: str
    unit_code: str
    scope_path: str
    entity_type: str | None
    entity_id: str | None
    params: Any
    flap_limit: int
    flap_window: float
    min_duration: float
    max_quality: int
    signature: tuple[Any, ...]
    states: dict[str, State] = field(default_factory=dict)
    filtered: bool = False  # an entity id or entity type narrows the rule
    above: bool = True  # threshold: fire at or above (else at or below)
    limit: float = 0.0  # threshold: the firing value
    clear: float = 0.0  # threshold: the clearing value
    strict_clear: bool = False  # threshold: clear strictly past `clear` (no separate clear threshold given)
    row: Rule | None = None  # the row as loaded (detached): what an alert is made from, without reading it again

    def accepts(self, entity: str | None, entity_types: dict[str, str]) -> bool:
        """True when an item about this entity (or a unit, when None) falls under the rule's entity filters."""
        if self.entity_id is not None and entity != self.entity_id:
            return False
        return self.entity_type is None or (entity is not None and entity_types.get(entity) == self.entity_type)


@dataclass(slots=True)
class Action:
    """An alert change decided by the engine, written after evaluation."""

    op: str  # fire | resolve | flapping | stable
    rule: Compiled
    subject: str
    state: State
    ts: float
    value: float | None = None
    threshold: float | None = None
    details: dict[str, Any] = field(default_factory=dict)
    started: float | None = None  # fire: data time the condition began (kept here: the state moves on)
    flapping: bool = False  # fire: whether it fires flapping


def _signature(rule: Rule) -> tuple[Any, ...]:
    """What, when it changes, makes the engine forget a rule's state."""
    return (rule.kind, repr(sorted(rule.params.items())), rule.unit_code, rule.entity_type, rule.entity_id,
            rule.flap_limit, rule.flap_window_seconds)


def _parse_ts(text: str | datetime) -> float:
    if isinstance(text, datetime):
        return text.timestamp()
    return datetime.fromisoformat(text).timestamp()


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


class RulesEngine:
    """Compiled rules, per-subject state, and the bus handlers that drive them.

    Threaded (the default on PostgreSQL), the bus handlers only queue committed batches: the engine's own thread
    evaluates them and writes their alert changes, so a writer (an ingest request, the MQTT door) never waits for
    the rules or the alerts' transaction, and when the engine falls behind, the queued batches are evaluated
    together and their alerts written in one transaction. `wait()` blocks until what was queued is done.

    On SQLite the engine evaluates in the writer's thread, right after its commit: SQLite has one writer at a
    time anyway, and an engine committing alerts from its own thread between another writer's first read and
    first write would make that writer's transaction fail (SQLITE_BUSY_SNAPSHOT) unless it began IMMEDIATE.
    """

    def __init__(self, session_factory: sessionmaker[Session], settings: Settings | None = None, *,
                 threaded: bool | None = None) -> None:
        self.session_factory = session_factory
        self.settings = settings
        if threaded is None:
            bind = session_factory.kw.get("bind")
            threaded = getattr(getattr(bind, "dialect", None), "name", "sqlite") != "sqlite"
        self.threaded = threaded
        self.lock = threading.RLock()
        self.rules: dict[uuid.UUID, Compiled] = {}
        self.states: dict[uuid.UUID, dict[str, State]] = {}
        self.by_indicator: dict[str, dict[str, list[Compiled]]] = {}
        self.silence_any: dict[str, list[Compiled]] = {}
        self.by_event: dict[str, dict[str, list[Compiled]]] = {}
        # (indicator, unit) -> the rules an item of that indicator in that unit concerns, found once
        self.candidates: dict[tuple[str, str], tuple[Compiled, ...]] = {}
        self.needs_entity_types = False
        self.paths: dict[str, str] = {}
        self.unit_names: dict[str, str] = {}
        self.chains: dict[str, tuple[str, ...]] = {}
        self.entity_types: dict[str, str] = {}
        self.targets: dict[tuple[str, str], tuple[float, list[tuple[float, float, float]]]] = {}
        self.stats = {"items": 0, "evaluations": 0, "fired": 0, "resolved": 0, "errors": 0}
        self.durations: deque[float] = deque(maxlen=10_000)  # seconds spent on each recent batch (evaluate + write)
        self.bus: Any = None
        self._unsubscribe: list[Callable[[], None]] = []
        # the queue of committed batches (threaded): sequence numbers say what has been handed in and what is done
        self._queue: deque[tuple[Message, int]] = deque()
        self._queued_items = 0
        self._handed = 0
        self._done = 0
        self._cv = threading.Condition()
        self._running = False
        self._thread: threading.Thread | None = None
        self.last_id: str | None = None  # bus id of the last batch evaluated
        self.after_round: Callable[[str], None] | None = None  # told that id after each round (the leadership)
        self.replayed_through: tuple[int, int] | None = None  # batches up to here were evaluated by the replay

    # -- lifecycle ------------------------------------------------------------------------------------------

    def start(self, replay_after: str | None = None) -> RulesEngine:
        """Load units, rules and open alerts, then follow the bus.

        `replay_after`: the id of the last batch an earlier engine finished (a takeover on a shared bus); the
        batches after it that the bus still keeps are evaluated first, in order, before any newer one."""
        with self.lock:
            self._load_units()
            self.reload()
            bus = self.bus = get_bus()
            if self.threaded:
                self._running = True
                self._thread = threading.Thread(target=self._work, name="saola-rules", daemon=True)
                self._thread.start()
            # Subscribing under the lock: batches delivered meanwhile wait for the replay below to finish.
            self._unsubscribe = [
                bus.subscribe("observations.ingested", self._hand_in),
                bus.subscribe("events.ingested", self._hand_in),
                bus.subscribe("rules.*", self.on_rules),
                bus.subscribe("alerts.resolved", self.on_alert_resolved),
                bus.subscribe("targets.*", self.on_targets),
                bus.subscribe("units.loaded", self.on_units),
            ]
            if replay_after:
                self._replay(bus, replay_after)
        return self

    def _replay(self, bus: Any, after: str) -> None:
        """Evaluate the data batches the bus keeps after `after`; those also delivered live are skipped later."""
        cursor, count = after, 0
        while True:
            page = bus.replay(cursor, 1000)
            if count == 0 and not page.complete:
                log.warning("rules: some batches after %s have left the bus; they are not evaluated", after)
            if not page.messages:
                break
            batch = [m for m in page.messages if m.topic in ("observations.ingested", "events.ingested")]
            if batch:
                self._process_safely(batch)
                count += len(batch)
            cursor = page.messages[-1].id
            self.replayed_through = parse_id(cursor)
        if count:
            log.info("rules: evaluated %d batch(es) committed while no engine ran", count)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop following the bus; the engine's thread finishes what was queued, then ends."""
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []
        thread = self._thread
        if thread is not None:
            with self._cv:
                self._running = False
                self._cv.notify_all()
            thread.join(timeout)
            self._thread = None

    # -- the queue (threaded) ------------------------------------------------------------------------------

    def _hand_in(self, message: Message) -> None:
        """A committed batch: evaluate it now (not threaded) or queue it for the engine's thread."""
        if not self.threaded or self._thread is None:
            self._process_safely([message])
            return
        items = message.data.get("items")
        if not items:
            return
        # A batch no rule can concern is dropped here, in the writer's thread, at the cost of a few lookups.
        if message.topic.startswith("observations.") and not (self.by_indicator or self.silence_any):
            return
        if message.topic.startswith("events.") and not self.by_event:
            return
        n = len(items)
        with self._cv:
            # Far behind: hold the writer back rather than queue without bound (the thread drains meanwhile) —
            # unless the writer is the engine's own thread (a subscriber of alerts writing readings), which would
            # wait for itself.
            own = threading.current_thread() is self._thread
            while self._queued_items > MAX_PENDING_ITEMS and self._running and not own:
                self._cv.wait(0.5)
            self._handed += 1
            self._queue.append((message, n))
            self._queued_items += n
            self._cv.notify_all()

    def _work(self) -> None:
        """The engine's thread: take what is queued (up to a bound), evaluate it, write its alert changes."""
        while True:
            with self._cv:
                while not self._queue and self._running:
                    self._cv.wait()
                if not self._queue:
                    return
                taken = [self._queue.popleft() for _ in range(min(len(self._queue), MAX_MESSAGES_PER_WRITE))]
            self._process_safely([m for m, _ in taken])
            with self._cv:
                self._done += len(taken)
                self._queued_items -= sum(n for _, n in taken)
                self._cv.notify_all()

    def wait(self, timeout: float | None = 10.0) -> bool:
        """Block until every batch handed in before this call is evaluated and its alerts written (True), or the
        timeout passes (False). Immediate when the engine is idle or not threaded."""
        if self._thread is None or threading.current_thread() is self._thread:
            return True
        with self._cv:
            target = self._handed
            return self._cv.wait_for(lambda: self._done >= target or self._thread is None, timeout)

    def pending(self) -> int:
        """Rows handed in and not evaluated yet."""
        with self._cv:
            return self._queued_items

    def _process_safely(self, messages: Sequence[Message]) -> None:
        try:
            self._process(messages)
        except Exception:  # a batch the engine cannot read must not stop the next ones (nor fail its writer)
            self.stats["errors"] += 1
            log.exception("evaluating %d batch(es) failed", len(messages))

    def _process(self, messages: Sequence[Message]) -> None:
        """Evaluate batches in the order they were committed and write their alert changes in one transaction."""
        began = time.perf_counter()
        actions: list[Action] = []
        with self.lock:
            evaluated = self.stats["evaluations"]
            through = self.replayed_through
            for message in messages:
                if through is not None and message.id:
                    key = parse_id(message.id)
                    if key is not None and key <= through:
                        continue  # evaluated already by the replay at start
                if message.topic.startswith("events."):
                    self._evaluate_events(message, actions)
                else:
                    self._evaluate_observations(message, actions)
            if actions:
                self._apply(actions)
            if actions or self.stats["evaluations"] != evaluated:
                self.durations.append(time.perf_counter() - began)
            if messages and messages[-1].id:
                self.last_id = messages[-1].id
                if self.after_round is not None:
                    try:
                        self.after_round(self.last_id)
                    except Exception:  # noting progress is best effort: a takeover replays a little more
                        log.exception("rules: noting the last batch evaluated failed")

    def _load_units(self) -> None:
        with self.session_factory() as session:
            rows = session.execute(select(Unit.code, Unit.path, Unit.name)).all()
        self.paths = {code: path for code, path, _ in rows}
        self.unit_names = {code: name for code, _, name in rows}
        self.chains = {}
        self.candidates = {}

    def _chain(self, unit: str) -> tuple[str, ...]:
        """The codes from the nation down to this unit (its path), looked up once."""
        chain = self.chains.get(unit)
        if chain is None:
            path = self.paths.get(unit)
            if path is None:
                with self.session_factory() as session:
                    path = session.scalar(select(Unit.path).where(Unit.code == unit))
                if path is None:
                    return ()
                self.paths[unit] = path
            chain = self.chains[unit] = tuple(path.split("."))
        return chain

    def reload(self) -> None:
        """Compile the enabled rules; keep the state of rules whose definition did not change."""
        with self.lock, self.session_factory() as session:
            rows = list(session.scalars(select(Rule).where(Rule.enabled.is_(True))))
            compiled: dict[uuid.UUID, Compiled] = {}
            for row in rows:
                rule = self._compile(row)
                if rule is not None:
                    compiled[rule.id] = rule
            fresh = [r for r in compiled.values()
                     if r.id not in self.rules or self.rules[r.id].signature != r.signature]
            for rule_id in list(self.states):
                if rule_id not in compiled or any(r.id == rule_id for r in fresh):
                    del self.states[rule_id]
            self.rules = compiled
            for rule in compiled.values():
                rule.states = self.states.setdefault(rule.id, {})
            self._index()
            if fresh:
                self._restore_open_alerts(session, {r.id for r in fresh})
                self._init_silence(session, [r for r in fresh if r.kind == "silence"])

    def _compile(self, row: Rule) -> Compiled | None:
        try:
            params: BaseModel = PARAMS_MODELS[row.kind].model_validate(row.params)
        except Exception:  # a rule edited into nonsense directly in the database: skip it, say so
            log.exception("rule %s has invalid parameters; skipped", row.id)
            return None
        chain = self._chain(row.unit_code)
        if not chain:
            return None
        path = ".".join(chain)
        rule = Compiled(
            id=row.id, name=row.name, kind=row.kind, severity=row.severity, unit_code=row.unit_code, scope_path=path,
            entity_type=row.entity_type, entity_id=str(row.entity_id) if row.entity_id else None, params=params,
            flap_limit=row.flap_limit, flap_window=float(row.flap_window_seconds),
            min_duration=float(getattr(params, "min_duration_seconds", 0)),
            max_quality=int(getattr(params, "max_quality", 2)), signature=_signature(row),
            filtered=row.entity_id is not None or row.entity_type is not None, row=row,
        )
        if row.kind == "threshold":
            p = params  # a ThresholdParams
            rule.above, rule.limit = p.direction == "above", float(p.threshold)  # type: ignore[attr-defined]
            clear = p.clear_threshold  # type: ignore[attr-defined]
            rule.clear, rule.strict_clear = (float(p.threshold), True) if clear is None else (float(clear), False)  # type: ignore[attr-defined]
        return rule

    def _index(self) -> None:
        by_indicator: dict[str, dict[str, list[Compiled]]] = {}
        silence_any: dict[str, list[Compiled]] = {}
        by_event: dict[str, dict[str, list[Compiled]]] = {}
        for rule in self.rules.values():
            if rule.kind == "event_count":
                by_event.setdefault(rule.params.event_type, {}).setdefault(rule.unit_code, []).append(rule)
            elif rule.kind == "silence" and rule.params.indicator is None:
                silence_any.setdefault(rule.unit_code, []).append(rule)
            else:
                by_indicator.setdefault(rule.params.indicator, {}).setdefault(rule.unit_code, []).append(rule)
        self.by_indicator, self.silence_any, self.by_event = by_indicator, silence_any, by_event
        self.candidates = {}
        self.needs_entity_types = any(r.entity_type for r in self.rules.values())

    def _restore_open_alerts(self, session: Session, rule_ids: set[uuid.UUID]) -> None:
        """Alerts left open (by an earlier run) are open in the state too, so they can clear."""
        stmt = select(Alert.rule_id, Alert.subject, Alert.unit_code, Alert.entity_id, Alert.flapping).where(
            Alert.open_key.is_not(None))
        for rule_id, subject, unit, entity, flapping in session.execute(stmt):
            if rule_id in rule_ids:
                self.states[rule_id][subject] = State(unit=unit, entity=str(entity) if entity else None, active=True,
                                                      alert_open=True, flapping=flapping)

    def _init_silence(self, session: Session, rules: Sequence[Compiled]) -> None:
        """Last-seen times of silence rules' subjects, from the latest-value table (one query per indicator)."""
        groups: dict[str | None, list[Compiled]] = {}
        for rule in rules:
            groups.setdefault(rule.params.indicator, []).append(rule)
        for indicator, members in groups.items():
            stmt = (select(Subject.unit_code, Subject.entity_id, func.max(LatestObservation.ts))
                    .join(Subject, Subject.id == LatestObservation.subject_id)
                    .group_by(Subject.id, Subject.unit_code, Subject.entity_id))
            if indicator is not None:
                stmt = stmt.join(Indicator, Indicator.id == LatestObservation.indicator_id).where(
                    Indicator.code == indicator)
            rows = [(unit, str(entity) if entity else None, ts.timestamp())
                    for unit, entity, ts in session.execute(stmt)]
            self._fetch_entity_types(session, {e for _, e, _ in rows if e})
            for rule in members:
                states = self.states[rule.id]
                for unit, entity, ts in rows:
                    if rule.unit_code not in self._chain(unit) or not rule.accepts(entity, self.entity_types):
                        continue
                    subject = f"e:{entity}" if entity else f"u:{unit}"
                    st = states.get(subject)
                    if st is None:
                        st = states[subject] = State(unit=unit, entity=entity)
                    st.last_ts = max(st.last_ts, ts)

    def _fetch_entity_types(self, session: Session | None, ids: Iterable[str]) -> None:
        missing = [i for i in ids if i not in self.entity_types]
        if not missing:
            return
        wanted = [uuid.UUID(i) for i in missing]

        def load(s: Session) -> None:
            for start in range(0, len(wanted), 500):
                rows = s.execute(select(Entity.id, Entity.type).where(Entity.id.in_(wanted[start:start + 500])))
                self.entity_types.update((str(eid), etype) for eid, etype in rows)

        if session is not None:
            load(session)
        else:
            with self.session_factory() as s:
                load(s)

    # -- bus handlers --------------------------------------------------------------------------------------

    def on_observations(self, message: Message) -> None:
        """Evaluate the rules that concern a committed batch of readings, and write the alert changes, now."""
        self._process([message])

    def on_events(self, message: Message) -> None:
        """Count committed events against event-count rules, and write the alert changes, now."""
        self._process([message])

    def _candidates(self, indicator: str, unit: str) -> tuple[Compiled, ...]:
        """The rules that may concern a reading of this indicator in this unit: those on the indicator (and the
        silence rules on any indicator) scoped to the unit or one above it; remembered until the rules change."""
        key = (indicator, unit)
        found = self.candidates.get(key)
        if found is None:
            scoped = self.by_indicator.get(indicator)
            silence_any = self.silence_any
            rules: list[Compiled] = []
            if scoped is not None or silence_any:
                for code in self._chain(unit):
                    if scoped is not None:
                        rules.extend(scoped.get(code, ()))
                    rules.extend(silence_any.get(code, ()))
            if len(self.candidates) >= MAX_CANDIDATES:
                self.candidates = {}
            found = self.candidates[key] = tuple(rules)
        return found

    def _evaluate_observations(self, message: Message, actions: list[Action]) -> None:
        """The hot path, under the lock: an item costs one dictionary lookup for its candidate rules (none for most
        items) and a comparison per candidate in the common case where nothing changes."""
        items = message.data.get("items")
        if not items or not (self.by_indicator or self.silence_any):
            return
        candidates, cached = self._candidates, self.candidates
        matched: list[tuple[dict[str, Any], tuple[Compiled, ...]]] = []
        if isinstance(items, LiveReadings):  # one lookup per series, items made only for the matched ones
            for run in items.runs():
                found = cached.get((run[0], run[1]))
                if found is None:
                    found = candidates(run[0], run[1])
                    cached = self.candidates
                if found:
                    matched.extend([(item, found) for item in items.items_of(run)])
        else:
            for item in items:
                found = cached.get((item["indicator"], item["unit"]))
                if found is None:
                    found = candidates(item["indicator"], item["unit"])
                    cached = self.candidates
                if found:
                    matched.append((item, found))
        if not matched:
            return
        times: dict[str, float] = {}
        for item, _ in matched:
            raw = item["ts"]
            if raw not in times:
                times[raw] = _parse_ts(raw)
        if len(times) > 1:  # decide in data-time order (the sort is stable)
            matched.sort(key=lambda m: times[m[0]["ts"]])
        if self.needs_entity_types:
            self._fetch_entity_types(None, {i["entity"] for i, _ in matched if i.get("entity")})
        entity_types = self.entity_types
        evaluations = 0
        for item, rules in matched:
            ts = times[item["ts"]]
            entity = item.get("entity")
            subject = f"e:{entity}" if entity else f"u:{item['unit']}"
            quality = item.get("quality", 0)
            for rule in rules:
                if rule.filtered and not rule.accepts(entity, entity_types):
                    continue
                evaluations += 1
                if rule.kind == "threshold":
                    if quality > rule.max_quality:
                        continue
                    value = item["value"]
                    on = value >= rule.limit if rule.above else value <= rule.limit
                    st = rule.states.get(subject)
                    if st is None:
                        if not on:
                            continue  # nothing to remember about a quiet subject
                        st = rule.states[subject] = State(unit=item["unit"], entity=entity)
                    elif ts < st.last_ts:
                        continue  # late data does not rewrite what was decided on newer readings
                    st.last_ts, st.last_value = ts, value
                    if rule.above:
                        off = value < rule.clear if rule.strict_clear else value <= rule.clear
                    else:
                        off = value > rule.clear if rule.strict_clear else value >= rule.clear
                    if not st.changes and (
                            (not st.active and not on and st.pending_since is None and not st.alert_open)
                            or (st.active and not off and st.alert_open)):
                        continue  # nothing changes
                    self._step(rule, st, subject, ts, on, off, value, rule.limit, actions)
                else:
                    self._observe(rule, item, subject, ts, actions)
        self.stats["items"] += len(matched)
        self.stats["evaluations"] += evaluations

    def _evaluate_events(self, message: Message, actions: list[Action]) -> None:
        """Count a batch of events against the event-count rules, under the lock."""
        items = message.data.get("items")
        if not items or not self.by_event:
            return
        if self.needs_entity_types:
            self._fetch_entity_types(None, {i["entity"] for i in items if i.get("entity")})
        work: list[tuple[float, int, dict[str, Any], Compiled]] = []
        for n, item in enumerate(items):
            scoped = self.by_event.get(item["type"])
            if not scoped:
                continue
            for code in self._chain(item["unit"]):
                for rule in scoped.get(code, ()):
                    if rule.accepts(item.get("entity"), self.entity_types):
                        work.append((_parse_ts(item["occurred_at"]), n, item, rule))
        work.sort(key=lambda w: (w[0], w[1]))
        for ts, _, item, rule in work:
            self._count(rule, item, ts, actions)
        self.stats["evaluations"] += len(work)

    def on_rules(self, _message: Message) -> None:
        """A rule was created, changed or deleted: recompile."""
        self.reload()

    def on_alert_resolved(self, message: Message) -> None:
        """An alert resolved by hand: the subject stays quiet until its condition clears and holds again."""
        data = message.data
        if data.get("resolution") != "manual" or not data.get("rule_id"):
            return
        with self.lock:
            states = self.states.get(uuid.UUID(data["rule_id"]))
            st = states.get(data["subject"]) if states else None
            if st is not None:
                st.alert_open, st.flapping, st.suppressed = False, False, st.active

    def on_targets(self, message: Message) -> None:
        """Plan targets changed: forget the cached ones of that indicator."""
        code = message.data.get("id")
        with self.lock:
            for key in [k for k in self.targets if k[0] == code]:
                del self.targets[key]

    def on_units(self, _message: Message) -> None:
        """The unit tree was reloaded."""
        with self.lock:
            self._load_units()

    # -- evaluation ----------------------------------------------------------------------------------------

    def _state(self, rule: Compiled, subject: str, unit: str, entity: str | None) -> State:
        states = rule.states
        st = states.get(subject)
        if st is None:
            st = states[subject] = State(unit=unit, entity=entity)
        return st

    def _observe(self, rule: Compiled, item: dict[str, Any], subject: str, ts: float, out: list[Action]) -> None:
        """Rate of change, plan target and silence (threshold rules are evaluated inline, they are the most)."""
        entity = item.get("entity")
        unit = item["unit"]
        kind = rule.kind
        if kind == "silence":
            st = self._state(rule, subject, unit, entity)
            if ts > st.last_ts:
                st.last_ts = ts
            if st.active or st.alert_open or st.suppressed:
                self._step(rule, st, subject, ts, False, True, None, None, out)
            return
        if item.get("quality", 0) > rule.max_quality:
            return
        st = self._state(rule, subject, unit, entity)
        if ts < st.last_ts:  # late data does not rewrite what was decided on newer readings
            return
        value = float(item["value"])
        st.last_ts, st.last_value = ts, value
        p = rule.params
        if kind == "rate_of_change":
            window = st.window
            if window is None:
                window = st.window = deque()
            window.append((ts, value))
            horizon = ts - p.window_seconds
            while len(window) > 1 and window[0][0] < horizon:
                window.popleft()
            first_ts, first_value = window[0]
            if ts <= first_ts:
                return
            rate = (value - first_value) / ((ts - first_ts) / 60.0)
            measure = rate if p.direction == "rise" else -rate if p.direction == "fall" else abs(rate)
            on = measure >= p.rate
            off = measure <= p.clear_rate if p.clear_rate is not None else measure < p.rate
            self._step(rule, st, subject, ts, on, off, round(rate, 6), p.rate, out,
                       details={"rate_per_minute": round(rate, 6)})
        elif kind == "plan_target":
            if entity is not None:
                return  # plan targets are set for units
            target = self._target(p.indicator, unit, ts)
            if target is None:
                return
            margin = abs(target) * p.tolerance_pct / 100.0
            if p.direction == "below":
                limit = target - margin
                on, off = value < limit, value >= limit
            else:
                limit = target + margin
                on, off = value > limit, value <= limit
            self._step(rule, st, subject, ts, on, off, value, target, out, details={"target": target})

    def _count(self, rule: Compiled, item: dict[str, Any], ts: float, out: list[Action]) -> None:
        p = rule.params
        if p.min_severity and SEVERITIES.index(item.get("severity", "info")) < SEVERITIES.index(p.min_severity):
            return
        entity = item.get("entity")
        if p.per == "unit":
            subject, unit = f"u:{item['unit']}", item["unit"]
        elif p.per == "entity":
            if not entity:
                return
            subject, unit = f"e:{entity}", item["unit"]
        else:
            subject, unit, entity = "*", rule.unit_code, None
        st = self._state(rule, subject, unit, entity)
        if st.window is None:
            st.window = []
        bisect.insort(st.window, ts)
        if ts > st.last_ts:
            st.last_ts = ts
        self._count_step(rule, st, subject, st.last_ts, out)

    def _count_step(self, rule: Compiled, st: State, subject: str, ref: float, out: list[Action]) -> None:
        p = rule.params
        times: list[float] = st.window or []
        cut = bisect.bisect_right(times, ref - p.window_seconds)
        if cut:
            del times[:cut]
        count = len(times)
        clear = p.clear_count if p.clear_count is not None else p.count - 1
        self._step(rule, st, subject, ref, count >= p.count, count <= clear, float(count), float(p.count), out,
                   details={"window_seconds": p.window_seconds})

    def _target(self, indicator: str, unit: str, ts: float) -> float | None:
        """The plan target of the narrowest period holding ts, cached for a few minutes."""
        key = (indicator, unit)
        cached = self.targets.get(key)
        now = time.monotonic()
        if cached is None or now - cached[0] > TARGET_TTL_SECONDS:
            with self.session_factory() as session:
                rows = session.execute(
                    select(IndicatorTarget.period_start, IndicatorTarget.period_end, IndicatorTarget.target_value)
                    .join(Indicator, Indicator.id == IndicatorTarget.indicator_id)
                    .where(Indicator.code == indicator, IndicatorTarget.unit_code == unit)).all()
            periods = sorted(((s.timestamp(), e.timestamp(), v) for s, e, v in rows), key=lambda r: r[1] - r[0])
            cached = self.targets[key] = (now, periods)
        for start, end, value in cached[1]:
            if start <= ts < end:
                return value
        return None

    def _step(self, rule: Compiled, st: State, subject: str, ts: float, on: bool, off: bool, value: float | None,
              threshold: float | None, out: list[Action], details: dict[str, Any] | None = None) -> None:
        """Hysteresis, minimum duration and flapping; appends the alert changes to make."""
        changed = False
        if not st.active:
            if on:
                if st.pending_since is None:
                    st.pending_since = ts
                if ts - st.pending_since >= rule.min_duration:
                    st.active = changed = True
            else:
                st.pending_since = None
        elif off:
            st.active, st.pending_since, st.suppressed, changed = False, None, False, True
        changes = st.changes
        if changed and rule.flap_limit:
            changes.append(ts)
        if changes:
            horizon = ts - rule.flap_window
            while changes and changes[0] <= horizon:
                changes.popleft()
        flapping = bool(rule.flap_limit) and len(changes) >= rule.flap_limit
        if st.active:
            if not st.alert_open:
                if not st.suppressed:
                    st.alert_open, st.flapping = True, flapping
                    started = st.pending_since if st.pending_since is not None else ts
                    out.append(Action("fire", rule, subject, st, ts, value, threshold, details or {}, started,
                                      flapping))
            elif flapping != st.flapping:
                st.flapping = flapping
                out.append(Action("flapping" if flapping else "stable", rule, subject, st, ts, value))
        elif st.alert_open:
            if flapping:
                if not st.flapping:
                    st.flapping = True
                    out.append(Action("flapping", rule, subject, st, ts, value))
            else:
                st.alert_open, st.flapping = False, False
                out.append(Action("resolve", rule, subject, st, ts, value))

    def _apply(self, actions: list[Action]) -> None:
        """Write the alert changes in one transaction; on failure the states are put back to retry later.

        Everything the changes need is read up front in a few queries (the rules that fire, the open alerts of every
        subject concerned, the names of the stations), and the rows are flushed together at commit."""
        if not actions:
            return
        try:
            with self.session_factory() as session, session.begin(), session.no_autoflush:
                session.connection(execution_options={"sqlite_immediate": True})
                fires = [a for a in actions if a.op == "fire"]
                # The rows loaded with the rules: a change to a rule reloads them (and a deleted rule is gone).
                rows = {a.rule.id: a.rule.row for a in fires if a.rule.row is not None and a.rule.id in self.rules}
                opened = alerts.open_alerts_by_key(session, [alerts.open_key(a.rule.id, a.subject) for a in actions])
                stations = {a.state.entity for a in fires if a.state.entity}
                names = {str(i): n for i, n in session.execute(
                    select(Entity.id, Entity.name).where(Entity.id.in_([uuid.UUID(e) for e in stations])))
                         } if stations else {}
                for action in actions:
                    st = action.state
                    key = alerts.open_key(action.rule.id, action.subject)
                    if action.op == "fire":
                        row = rows.get(action.rule.id)
                        if row is None or key in opened:  # a rule deleted meanwhile; an alert open already
                            continue
                        label = names.get(st.entity) if st.entity else self.unit_names.get(st.unit)
                        opened[key], _ = alerts.fire(
                            session, rule=row, subject=action.subject, unit_code=st.unit,
                            entity_id=uuid.UUID(st.entity) if st.entity else None, value=action.value,
                            threshold=action.threshold, started_at=_dt(action.started or action.ts),
                            flapping=action.flapping, details=action.details, settings=self.settings, label=label,
                            known_closed=True)
                        self.stats["fired"] += 1
                    elif action.op == "resolve":
                        alerts.auto_resolve(session, rule_id=action.rule.id, subject=action.subject,
                                            value=action.value, settings=self.settings, alert=opened.pop(key, None))
                        self.stats["resolved"] += 1
                    else:
                        alerts.set_flapping(session, rule_id=action.rule.id, subject=action.subject,
                                            flapping=action.op == "flapping", settings=self.settings,
                                            alert=opened.get(key))
        except Exception:
            self.stats["errors"] += 1
            log.exception("writing %d alert change(s) failed; they will be retried on the next data", len(actions))
            for action in reversed(actions):
                st = action.state
                if action.op == "fire":
                    st.alert_open = False
                elif action.op == "resolve":
                    st.alert_open = True
                else:
                    st.flapping = action.op != "flapping"

    # -- the clock -----------------------------------------------------------------------------------------

    def tick(self, now: datetime | None = None) -> None:
        """Time-driven checks: silent subjects fire, event counts whose window has passed clear."""
        self.wait()  # the data already committed first: a reading just in is not silence
        at = (now or utcnow()).timestamp()
        with self.lock:
            actions: list[Action] = []
            for rule in list(self.rules.values()):
                states = self.states.get(rule.id, {})
                if rule.kind == "silence":
                    limit = rule.params.minutes * 60.0
                    for subject, st in states.items():
                        if st.last_ts == NEG_INF:
                            continue
                        silent_for = at - st.last_ts
                        silent = silent_for >= limit
                        if silent or st.active or st.alert_open:
                            self._step(rule, st, subject, max(at, st.last_ts), silent, not silent,
                                       round(silent_for / 60.0, 1), float(rule.params.minutes), actions,
                                       details={"last_seen": _dt(st.last_ts).isoformat()})
                elif rule.kind == "event_count":
                    for subject, st in states.items():
                        if (st.active or st.alert_open or st.pending_since is not None) and at > st.last_ts:
                            self._count_step(rule, st, subject, at, actions)
            self._apply(actions)


# ---------------------------------------------------------------------------------------------------------------
# one engine per process, bound to the application's database

_engine: RulesEngine | None = None
_engine_lock = threading.Lock()


def start_engine(session_factory: sessionmaker[Session], settings: Settings | None = None, *,
                 replay_after: str | None = None) -> RulesEngine:
    """The process's engine for this database and bus, started once (another database or bus replaces it);
    `replay_after`: see RulesEngine.start."""
    global _engine
    with _engine_lock:
        if _engine is not None and _engine.session_factory is session_factory and _engine.bus is get_bus():
            if settings is not None:
                _engine.settings = settings
            return _engine
        if _engine is not None:
            _engine.stop()
        _engine = RulesEngine(session_factory, settings).start(replay_after)
        return _engine


def start_for_server(session_factory: sessionmaker[Session], settings: Settings) -> RulesEngine | None:
    """Start the engine in a server process: always on the in-process bus (each process sees only its own
    batches); on a shared bus (Redis) every worker takes part in a leadership through a Redis lock and only the
    holder runs the engine, which sees every worker's batches (see saola.core.rules.leader). Returns this
    process's engine, if it runs one now."""
    bus = get_bus()
    if isinstance(bus, InProcessBus):
        return start_engine(session_factory, settings)
    url = getattr(bus, "url", None)
    if not url:  # a bus adapter without Redis behind it: the worker that runs the jobs evaluates
        return start_engine(session_factory, settings) if settings.run_jobs else None
    global _leadership, _led
    from saola.core.rules.leader import Leadership

    with _leadership_lock:
        if _leadership is not None and _led == (session_factory, bus):
            return _engine
        if _leadership is not None:
            _leadership.close()
        _leadership = Leadership(
            url, f"{getattr(bus, 'stream', 'saola:bus')}:rules-leader",
            start=lambda after: start_engine(session_factory, settings, replay_after=after),
            stop=lambda _engine: stop_engine(),
            tick=not settings.run_jobs,  # the jobs' rules.tick runs the clock in the process that runs jobs
        ).start()
        _led = (session_factory, bus)
        return _engine


_leadership: Any = None  # the Leadership of this process, on a shared bus
_led: tuple[Any, Any] | None = None
_leadership_lock = threading.Lock()


def get_engine() -> RulesEngine | None:
    """The running engine, if any."""
    return _engine


def wait_idle(timeout: float | None = 10.0) -> bool:
    """Block until the running engine has evaluated every batch handed to it before this call and written its
    alerts (True), or the timeout passed (False); True at once when no engine runs in this process. On the
    in-process bus a batch is handed in as its transaction commits, so reading alerts after this sees what the
    readings just ingested caused; on a Redis bus the batch first travels through Redis."""
    engine = _engine
    return True if engine is None else engine.wait(timeout)


def stop_engine() -> None:
    """Stop the running engine (it stops following the bus)."""
    global _engine
    with _engine_lock:
        if _engine is not None:
            _engine.stop()
            _engine = None


def scheduled_jobs(interval_seconds: float = 15.0) -> list[ScheduledJob]:
    """The clock of the rules: silence and event-count expiry, every `interval_seconds`."""
    from saola.packs.definitions import ScheduledJob

    def run(context: Any) -> None:
        engine = _engine
        if engine is not None and engine.session_factory is context.session_factory:
            engine.tick()

    return [ScheduledJob("rules.tick", interval_seconds, run)]
