"""Subscription matching and notification delivery.

A change is matched against the active subscriptions inside the writer's transaction, and each matching
subscription gets one queued notification (a row) carrying the changed entities as the subscription wants them.
Nothing leaves the server inside the request: once the transaction commits, the door's notifier thread is woken
and POSTs the notifications ({id, type: "Notification", subscriptionId, notifiedAt, data}) to each endpoint,
retrying failures with exponential backoff (SAOLA_WEBHOOK_MAX_ATTEMPTS tries, SAOLA_WEBHOOK_TIMEOUT_SECONDS
each). A rolled-back change queues nothing.
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.error
import urllib.request
import uuid
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Engine, delete, event, select, update
from sqlalchemy.orm import Session, sessionmaker

from saola.core.units.models import Unit
from saola.db.types import utcnow
from saola.interop.ngsi_ld.context import JSON, LD_JSON, LdContext, context_of, link_header
from saola.interop.ngsi_ld.convert import EntityView, iso, render
from saola.interop.ngsi_ld.models import NgsiNotification, NgsiSubscription
from saola.interop.ngsi_ld.query import GeoQuery, Node, geo_matches, parse_geo, parse_q, q_matches, safe_regex
from saola.packs.manager import Registry

log = logging.getLogger(__name__)

KICK = "ngsi_ld_notify"
CHANGED = "ngsi_ld_subscriptions_changed"
CACHE_SECONDS = 5.0
MAX_ENTITIES_PER_NOTIFICATION = 1_000
LEASE = timedelta(minutes=2)
BACKOFF_BASE_SECONDS = 2.0
BACKOFF_MAX_SECONDS = 600.0
IDLE_SECONDS = 30.0
PURGE_SECONDS = 3600.0
KEEP_DELIVERED = timedelta(days=1)
KEEP_FAILED = timedelta(days=7)


@dataclass(frozen=True)
class Selector:
    """One entry of a subscription's entities: type IRI, id or id pattern (each optional)."""

    type_iri: str | None
    id: str | None
    pattern: Any

    def matches(self, view: EntityView) -> bool:
        """True when the entity fits this selector."""
        return ((self.type_iri is None or view.type_iri == self.type_iri)
                and (self.id is None or view.ngsi_id == self.id)
                and (self.pattern is None or bool(self.pattern.fullmatch(view.ngsi_id))))


@dataclass(frozen=True)
class Compiled:
    """A subscription ready for matching."""

    id: str
    selectors: tuple[Selector, ...]
    watched: frozenset[str] | None
    q: Node | None
    geo: GeoQuery | None
    context: LdContext
    attributes: frozenset[str] | None
    key_values: bool
    owner_scope_path: str
    expires_at: datetime | None

    def matches(self, view: EntityView, changed: set[str], unit_path: str) -> bool:
        """True when a change to this entity is to be notified."""
        if not (unit_path == self.owner_scope_path or unit_path.startswith(self.owner_scope_path + ".")):
            return False
        if self.selectors and not any(s.matches(view) for s in self.selectors):
            return False
        if self.watched is not None and not (self.watched & changed):
            return False
        if self.q is not None and not q_matches(self.q, view):
            return False
        return self.geo is None or geo_matches(self.geo, view.geometry)


def compile_subscription(row: NgsiSubscription) -> Compiled:
    """Parse a stored subscription's filters once."""
    ctx = context_of(row.context)
    selectors = tuple(Selector(e.get("type"), e.get("id"),
                               safe_regex(e["idPattern"], "idPattern") if e.get("idPattern") else None)
                      for e in row.entities or [])
    geo = None
    if row.geo:
        geo = parse_geo(row.geo.get("georel"), row.geo.get("geometry"), row.geo.get("coordinates"),
                        row.geo.get("geoproperty"))
    return Compiled(
        id=row.id, selectors=selectors, watched=frozenset(row.watched) if row.watched else None,
        q=parse_q(row.q, ctx) if row.q else None, geo=geo, context=ctx,
        attributes=frozenset(row.attributes) if row.attributes else None, key_values=row.format == "keyValues",
        owner_scope_path=row.owner_scope_path, expires_at=row.expires_at,
    )


class _SubscriptionCache:
    """The active subscriptions of one database, reloaded after a local change or every few seconds."""

    def __init__(self) -> None:
        self.items: list[Compiled] = []
        self.loaded_at = -1e9
        self.version = 0
        self.loaded_version = -1
        self.lock = threading.Lock()

    def get(self, session: Session) -> list[Compiled]:
        now = time.monotonic()
        if self.loaded_version == self.version and now - self.loaded_at < CACHE_SECONDS:
            return self.items
        version = self.version
        rows = session.scalars(select(NgsiSubscription).where(NgsiSubscription.is_active.is_(True))).all()
        items = []
        for row in rows:
            try:
                items.append(compile_subscription(row))
            except Exception:  # a subscription that no longer compiles notifies nothing; the others go on
                log.exception("NGSI-LD subscription %s cannot be compiled", row.id)
        with self.lock:
            self.items, self.loaded_at, self.loaded_version = items, now, version
        return items

    def invalidate(self) -> None:
        with self.lock:
            self.version += 1


_caches: weakref.WeakKeyDictionary[Engine, _SubscriptionCache] = weakref.WeakKeyDictionary()
_caches_lock = threading.Lock()


def _cache_for(engine: Any) -> _SubscriptionCache:
    with _caches_lock:
        found = _caches.get(engine)
        if found is None:
            found = _caches[engine] = _SubscriptionCache()
        return found


def subscriptions_changed(session: Session) -> None:
    """Mark that this transaction changes subscriptions: the cache is refreshed once it commits."""
    session.info[CHANGED] = True
    _cache_for(session.get_bind()).invalidate()


def has_subscriptions(session: Session) -> bool:
    """True when the session's database has active subscriptions (from the cache)."""
    return bool(_cache_for(session.get_bind()).get(session))


def queue_changes(session: Session, *, registry: Registry, changes: Sequence[tuple[EntityView, set[str]]]) -> int:
    """Queue a notification for each subscription that some of these changed entities match; returns how many."""
    if not changes:
        return 0
    subscriptions = _cache_for(session.get_bind()).get(session)
    if not subscriptions:
        return 0
    now = utcnow()
    codes = sorted({view.unit_code for view, _ in changes})
    paths: dict[str, str] = {}
    for start in range(0, len(codes), 500):
        rows = session.execute(select(Unit.code, Unit.path).where(Unit.code.in_(codes[start:start + 500])))
        paths.update((code, path) for code, path in rows)
    queued = 0
    for sub in subscriptions:
        if sub.expires_at is not None and sub.expires_at <= now:
            continue
        matched = [view for view, changed in changes if sub.matches(view, changed, paths.get(view.unit_code, ""))]
        only = set(sub.attributes) if sub.attributes else None
        for start in range(0, len(matched), MAX_ENTITIES_PER_NOTIFICATION):
            chunk = matched[start:start + MAX_ENTITIES_PER_NOTIFICATION]
            data = [render(view, sub.context, key_values=sub.key_values, only=only) for view in chunk]
            session.add(NgsiNotification(subscription_id=sub.id, data=orjson.dumps(data).decode(),
                                         next_attempt_at=now, created_at=now))
            queued += 1
    if queued:
        session.info[KICK] = True
    return queued


# --- delivery ----------------------------------------------------------------------------------------------------


def backoff_seconds(attempts: int) -> float:
    """Wait before the next try after `attempts` failed ones: 2 s, 4 s, 8 s ... at most 10 minutes."""
    return min(BACKOFF_BASE_SECONDS * 2 ** max(attempts - 1, 0), BACKOFF_MAX_SECONDS)


@dataclass
class _Claimed:
    id: uuid.UUID
    subscription_id: str
    data: str
    attempts: int
    uri: str
    accept: str
    context: Any
    receiver_info: list[dict[str, str]]


_DUE = (select(NgsiNotification.id).where(NgsiNotification.status == "pending")
        .order_by(NgsiNotification.next_attempt_at))


def _claim(session_factory: sessionmaker[Session], now: datetime, limit: int) -> list[_Claimed]:
    # Look first with a plain read: on SQLite even an empty write transaction makes a concurrent writer that has
    # already read fail at once ("database is locked"), so the write lock is only taken when there is work.
    with session_factory() as session:
        if session.scalar(_DUE.where(NgsiNotification.next_attempt_at <= now).limit(1)) is None:
            return []
    with session_factory() as session, session.begin():
        session.connection(execution_options={"sqlite_immediate": True})
        due = session.execute(
            select(NgsiNotification.id, NgsiNotification.next_attempt_at)
            .where(NgsiNotification.status == "pending", NgsiNotification.next_attempt_at <= now)
            .order_by(NgsiNotification.next_attempt_at, NgsiNotification.created_at, NgsiNotification.id)
            .limit(limit)).all()
        claimed: list[uuid.UUID] = []
        for notification_id, was in due:
            result = session.execute(
                update(NgsiNotification)
                .where(NgsiNotification.id == notification_id, NgsiNotification.status == "pending",
                       NgsiNotification.next_attempt_at == was)
                .values(next_attempt_at=now + LEASE))
            if result.rowcount == 1:  # type: ignore[attr-defined]
                claimed.append(notification_id)
        if not claimed:
            return []
        rows = session.execute(
            select(NgsiNotification.id, NgsiNotification.subscription_id, NgsiNotification.data,
                   NgsiNotification.attempts, NgsiSubscription.endpoint_uri, NgsiSubscription.endpoint_accept,
                   NgsiSubscription.context, NgsiSubscription.receiver_info)
            .join(NgsiSubscription, NgsiSubscription.id == NgsiNotification.subscription_id)
            .where(NgsiNotification.id.in_(claimed))).all()
        order = {c: i for i, c in enumerate(claimed)}
        return sorted((_Claimed(*row) for row in rows), key=lambda c: order[c.id])


def notification_body(claimed: _Claimed, now: datetime) -> tuple[bytes, dict[str, str]]:
    """The Notification a claimed row stands for, and its HTTP headers."""
    ctx = context_of(claimed.context)
    inline = not isinstance(ctx.value, str)
    ld = claimed.accept == LD_JSON or inline  # an inline context cannot travel in a Link header
    prefix = {"id": f"urn:ngsi-ld:Notification:{uuid.uuid4()}", "type": "Notification",
              "subscriptionId": claimed.subscription_id, "notifiedAt": iso(now)}
    head = orjson.dumps(prefix)[:-1]
    tail = b',"@context":' + orjson.dumps(ctx.value) + b"}" if ld else b"}"
    body = head + b',"data":' + claimed.data.encode() + tail
    headers = {"Content-Type": LD_JSON if ld else JSON, "User-Agent": "Saola-NGSI-LD/1"}
    if not ld:
        headers["Link"] = link_header(ctx)
    for info in claimed.receiver_info or []:
        key, value = info.get("key"), info.get("value")
        if isinstance(key, str) and isinstance(value, str) and key.lower() not in ("content-type", "content-length"):
            headers[key] = value
    return body, headers


def _post(uri: str, body: bytes, headers: dict[str, str], timeout: float) -> tuple[int | None, str]:
    request = urllib.request.Request(uri, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        return exc.code, f"HTTP {exc.code}"
    except Exception as exc:  # any transport failure is a failed attempt, retried later
        return None, f"{type(exc).__name__}: {exc}"[:500]
    return status, "" if 200 <= status < 300 else f"HTTP {status}"


def deliver_due(session_factory: sessionmaker[Session], *, timeout: float = 10.0, max_attempts: int = 8,
                now: datetime | None = None, limit: int = 50) -> dict[str, int]:
    """Send the notifications that are due; failures are retried with backoff, then given up as failed."""
    now = now or utcnow()
    claimed = _claim(session_factory, now, limit)
    counts = {"delivered": 0, "retrying": 0, "failed": 0}
    if not claimed:
        return counts
    results: list[tuple[_Claimed, int | None, str, datetime]] = []
    for item in claimed:
        sent_at = utcnow()
        body, headers = notification_body(item, sent_at)
        code, error = _post(item.uri, body, headers, timeout)
        results.append((item, code, error, sent_at))
    with session_factory() as session, session.begin():
        session.connection(execution_options={"sqlite_immediate": True})
        for item, code, error, sent_at in results:
            attempts = item.attempts + 1
            values: dict[str, Any] = {"attempts": attempts, "last_status": code, "last_error": error}
            stats: dict[str, Any] = {"last_notification": sent_at}
            if not error:
                values.update(status="delivered", delivered_at=sent_at)
                stats.update(last_success=sent_at, times_sent=NgsiSubscription.times_sent + 1)
                counts["delivered"] += 1
            else:
                stats.update(last_failure=sent_at, times_failed=NgsiSubscription.times_failed + 1)
                if attempts >= max_attempts:
                    values.update(status="failed")
                    counts["failed"] += 1
                else:
                    values.update(next_attempt_at=sent_at + timedelta(seconds=backoff_seconds(attempts)))
                    counts["retrying"] += 1
            session.execute(update(NgsiNotification).where(NgsiNotification.id == item.id).values(**values))
            session.execute(update(NgsiSubscription).where(NgsiSubscription.id == item.subscription_id)
                            .values(**stats))
    return counts


def purge_old(session_factory: sessionmaker[Session], *, now: datetime | None = None) -> int:
    """Forget notifications delivered a day ago or given up a week ago; returns how many."""
    now = now or utcnow()
    done = ((NgsiNotification.status == "delivered") & (NgsiNotification.delivered_at < now - KEEP_DELIVERED)) | (
        (NgsiNotification.status == "failed") & (NgsiNotification.created_at < now - KEEP_FAILED))
    with session_factory() as session:
        if session.scalar(select(NgsiNotification.id).where(done).limit(1)) is None:
            return 0  # nothing to do: take no write lock
    with session_factory() as session, session.begin():
        session.connection(execution_options={"sqlite_immediate": True})
        result = session.execute(delete(NgsiNotification).where(done))
        return int(result.rowcount or 0)  # type: ignore[attr-defined]


def next_due(session_factory: sessionmaker[Session]) -> datetime | None:
    """When the next pending notification is due, if any."""
    with session_factory() as session:
        return session.scalar(select(NgsiNotification.next_attempt_at).where(NgsiNotification.status == "pending")
                              .order_by(NgsiNotification.next_attempt_at).limit(1))


class Notifier(threading.Thread):
    """Delivers queued notifications: woken after each commit that queued some, and on the next retry's time."""

    def __init__(self, session_factory: sessionmaker[Session], *, timeout: float, max_attempts: int) -> None:
        super().__init__(name="saola-ngsi-ld-notifier", daemon=True)
        self.session_factory = session_factory
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.wake = threading.Event()
        self.stopping = threading.Event()

    def kick(self) -> None:
        """Look for due notifications now."""
        self.wake.set()

    def run(self) -> None:
        """Deliver until stopped."""
        wait = 0.0
        purged_at = time.monotonic()
        while not self.stopping.is_set():
            self.wake.wait(wait)
            self.wake.clear()
            if self.stopping.is_set():
                break
            try:
                while sum(deliver_due(self.session_factory, timeout=self.timeout,
                                      max_attempts=self.max_attempts).values()):
                    pass
                if time.monotonic() - purged_at > PURGE_SECONDS:
                    purged_at = time.monotonic()
                    purge_old(self.session_factory)
                upcoming = next_due(self.session_factory)
            except Exception:  # the database may be away for a moment: try again later
                log.exception("NGSI-LD notification delivery failed")
                upcoming = None
            if upcoming is None:
                wait = IDLE_SECONDS
            else:
                wait = min(max((upcoming - utcnow()).total_seconds(), 0.05), IDLE_SECONDS)

    def stop(self) -> None:
        """Finish the current round and end."""
        self.stopping.set()
        self.wake.set()


_notifiers: weakref.WeakKeyDictionary[Engine, Notifier] = weakref.WeakKeyDictionary()
_notifiers_lock = threading.Lock()


def start_notifier(session_factory: sessionmaker[Session], *, timeout: float, max_attempts: int) -> Notifier:
    """The running notifier of the factory's database, started when there is none."""
    engine = session_factory.kw["bind"]
    with _notifiers_lock:
        found = _notifiers.get(engine)
        if found is None or not found.is_alive() or found.stopping.is_set():
            found = _notifiers[engine] = Notifier(session_factory, timeout=timeout, max_attempts=max_attempts)
            found.start()
        return found


def stop_notifier(engine: Engine) -> None:
    """Stop the notifier of the engine's database, if one runs (the application is shutting down)."""
    with _notifiers_lock:
        found = _notifiers.pop(engine, None)
    if found is not None:
        found.stop()
        found.join(timeout=5)


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    changed = session.info.pop(CHANGED, False)
    kick = session.info.pop(KICK, False)
    if not (changed or kick):
        return
    engine = session.get_bind()
    if changed:
        _cache_for(engine).invalidate()
    if kick:
        notifier = _notifiers.get(engine)  # type: ignore[arg-type]
        if notifier is not None:
            notifier.kick()


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    session.info.pop(KICK, None)
    session.info.pop(CHANGED, None)
