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

from saola.bus import InProcessBus, Message, get_bus
from saola.core.alerts import service as alerts
from saola.core.alerts.models import Alert
from saola.core.entities.models import Entity
from saola.core.events.schemas import SEVERITIES
from saola.core.indicators.models import Indicator, IndicatorTarget
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
    """Compiled rules, per-subject state, and the bus handlers that drive them."""

    def __init__(self, session_factory: sessionmaker[Session], settings: Settings | None = None) -> None:
        self.session_factory = session_factory
        self.settings = settings
        self.lock = threading.RLock()
        self.rules: dict[uuid.UUID, Compiled] = {}
        self.states: dict[uuid.UUID, dict[str, State]] = {}
        self.by_indicator: dict[str, dict[str, list[Compiled]]] = {}
        self.silence_any: dict[str, list[Compiled]] = {}
        self.by_event: dict[str, dict[str, list[Compiled]]] = {}
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

    # -- lifecycle ------------------------------------------------------------------------------------------

    def start(self) -> RulesEngine:
        """Load units, rules and open alerts, then follow the bus."""
        with self.lock:
            self._load_units()
            self.reload()
        bus = self.bus = get_bus()
        self._unsubscribe = [
            bus.subscribe("observations.ingested", self.on_observations),
            bus.subscribe("events.ingested", self.on_events),
            bus.subscribe("rules.*", self.on_rules),
            bus.subscribe("alerts.resolved", self.on_alert_resolved),
            bus.subscribe("targets.*", self.on_targets),
            bus.subscribe("units.loaded", self.on_units),
        ]
        return self

    def stop(self) -> None:
        """Stop following the bus."""
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []

    def _load_units(self) -> None:
        with self.session_factory() as session:
            rows = session.execute(select(Unit.code, Unit.path, Unit.name)).all()
        self.paths = {code: path for code, path, _ in rows}
        self.unit_names = {code: name for code, _, name in rows}
        self.chains = {}

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
            filtered=row.entity_id is not None or row.entity_type is not None,
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
        """Evaluate the rules that concern a committed batch of readings.

        The hot path: an item whose indicator no rule watches costs one dictionary lookup; one that a rule watches
        costs a lookup per level of its unit's path and a comparison per rule, in the common case where nothing
        changes.
        """
        items = message.data.get("items")
        by_indicator, silence_any = self.by_indicator, self.silence_any
        if not items or not (by_indicator or silence_any):
            return
        chain = self._chain
        matched: list[tuple[dict[str, Any], list[Compiled]]] = []
        none: dict[str, list[Compiled]] = {}
        for item in items:
            scoped = by_indicator.get(item["indicator"], none)
            if scoped is none and not silence_any:
                continue
            found: list[Compiled] | None = None
            for code in chain(item["unit"]):
                rules = scoped.get(code)
                if rules:
                    found = rules if found is None else found + rules
                if silence_any:
                    rules = silence_any.get(code)
                    if rules:
                        found = rules if found is None else found + rules
            if found:
                matched.append((item, found))
        if not matched:
            return
        began = time.perf_counter()
        with self.lock:
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
            actions: list[Action] = []
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
            self._apply(actions)
            self.durations.append(time.perf_counter() - began)

    def on_events(self, message: Message) -> None:
        """Count committed events against event-count rules."""
        items = message.data.get("items")
        if not items or not self.by_event:
            return
        with self.lock:
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
            actions: list[Action] = []
            for ts, _, item, rule in work:
                self._count(rule, item, ts, actions)
            self.stats["evaluations"] += len(work)
            self._apply(actions)

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
                    out.append(Action("fire", rule, subject, st, ts, value, threshold, details or {}))
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
        """Write the alert changes in one transaction; on failure the states are put back to retry later."""
        if not actions:
            return
        try:
            with self.session_factory() as session, session.begin():
                session.connection(execution_options={"sqlite_immediate": True})
                rows = {r.id: r for r in session.scalars(
                    select(Rule).where(Rule.id.in_({a.rule.id for a in actions if a.op == "fire"})))}
                for action in actions:
                    st = action.state
                    if action.op == "fire":
                        row = rows.get(action.rule.id)
                        if row is None:
                            continue
                        started = st.pending_since if st.pending_since is not None else action.ts
                        alerts.fire(session, rule=row, subject=action.subject, unit_code=st.unit,
                                    entity_id=uuid.UUID(st.entity) if st.entity else None, value=action.value,
                                    threshold=action.threshold, started_at=_dt(started), flapping=st.flapping,
                                    details=action.details, settings=self.settings,
                                    label=None if st.entity else self.unit_names.get(st.unit))
                        self.stats["fired"] += 1
                    elif action.op == "resolve":
                        alerts.auto_resolve(session, rule_id=action.rule.id, subject=action.subject,
                                            value=action.value, settings=self.settings)
                        self.stats["resolved"] += 1
                    else:
                        alerts.set_flapping(session, rule_id=action.rule.id, subject=action.subject,
                                            flapping=action.op == "flapping", settings=self.settings)
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


def start_engine(session_factory: sessionmaker[Session], settings: Settings | None = None) -> RulesEngine:
    """The process's engine for this database and bus, started once (another database or bus replaces it)."""
    global _engine
    with _engine_lock:
        if _engine is not None and _engine.session_factory is session_factory and _engine.bus is get_bus():
            if settings is not None:
                _engine.settings = settings
            return _engine
        if _engine is not None:
            _engine.stop()
        _engine = RulesEngine(session_factory, settings).start()
        return _engine


def start_for_server(session_factory: sessionmaker[Session], settings: Settings) -> RulesEngine | None:
    """Start the engine in a server process: always on the in-process bus (each process sees only its own
    batches); on a shared bus (Redis) only in the process that runs the scheduled jobs, so that one engine
    evaluates every batch once."""
    if not settings.run_jobs and not isinstance(get_bus(), InProcessBus):
        return None
    return start_engine(session_factory, settings)


def get_engine() -> RulesEngine | None:
    """The running engine, if any."""
    return _engine


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
