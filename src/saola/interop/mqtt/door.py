"""The MQTT door: Saola subscribes to a broker and writes what sources publish through the kernel's ingest.

Topics are `saola/<source name>/observations` and `saola/<source name>/events`. A payload is JSON: an envelope
`{"api_key": "sk_...", "items": [...]}`, or one item carrying its own `"api_key"`. The key must belong to the source
the topic names. Anything that cannot be parsed, authenticated or validated is written to the dead letters with the
reason (GET /api/dead-letters); nothing is dropped silently.

Delivery is at least once: Saola subscribes with QoS 1 on a persistent MQTT 5 session, acknowledges a message only
after its batch is committed (or its dead letter is), so a crash before the acknowledgement makes the broker send it
again; that re-delivery is harmless because readings are keyed by (indicator, subject, time) and events by
(source, external_id) — an event without external_id gets a hash of its content as one.

For throughput the network thread only queues raw messages; a worker thread takes everything queued at once,
groups it by source and kind, and makes one ingest call per group (up to 10,000 items). When a group is refused,
its messages are retried one by one, so one bad message goes to the dead letters without taking the good ones with it.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from sqlalchemy import exc as sa_exc
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from saola.config import Settings
from saola.core.auth.context import Actor
from saola.core.errors import DomainError, Unauthorized, ValidationFailed
from saola.core.events import service as events
from saola.core.ingest.service import DeadLetterIn, record_dead_letters, with_event_keys
from saola.core.observations import service as observations
from saola.core.observations.schemas import MAX_BATCH
from saola.core.sources.models import Source
from saola.core.sources.service import authenticate_key
from saola.db.engine import transaction
from saola.interop.mqtt.client import FastSubscriber
from saola.packs.manager import Registry, get_registry

log = logging.getLogger(__name__)

NAME_TTL = 30.0  # seconds the source a topic names is remembered (only to attribute dead letters)
PREFIX = "saola"
SUBSCRIPTION = f"{PREFIX}/#"
KINDS = ("observations", "events")
CHANNEL = "mqtt"
MAX_DRAIN = 50_000  # messages taken from the queue for one round


@dataclass(slots=True)
class Received:
    """A message as the network thread queued it."""

    topic: bytes
    payload: bytes
    mid: int
    qos: int
    at: float


@dataclass(slots=True)
class _Accepted:
    message: Received
    source_id: int
    source_name: str
    kind: str
    items: list[Any]
    actor: Actor


@dataclass
class _Key:
    source_id: int | None
    name: str | None
    actor: Actor | None
    reason: str | None


@dataclass
class DoorStats:
    """Counters since start (read by tests and the benchmark)."""

    received: int = 0
    messages_stored: int = 0
    items_accepted: int = 0
    items_duplicate: int = 0
    dead_letters: int = 0
    rounds: int = 0
    retries: int = 0
    last_error: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def parse_url(url: str) -> tuple[str, int, str | None, str | None, bool]:
    """mqtt://user:pass@host:1883 -> (host, port, user, password, tls); mqtts:// or ssl:// use TLS (port 8883)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("mqtt", "tcp", "mqtts", "ssl"):
        raise ValueError(f"unsupported MQTT URL {url!r}: use mqtt://host:1883 or mqtts://host:8883")
    tls = scheme in ("mqtts", "ssl")
    if not parts.hostname:
        raise ValueError(f"the MQTT URL {url!r} names no host")
    port = parts.port or (8883 if tls else 1883)
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    return parts.hostname, port, user, password, tls


class MqttDoor:
    """Subscribes to `saola/#` on a broker and ingests what it receives (see the module docstring)."""

    def __init__(self, url: str, *, session_factory: sessionmaker[Session], settings: Settings,
                 client_id: str | None = None, session_expiry: int = 3600, registry: Registry | None = None,
                 keepalive: int = 30) -> None:
        self.url = url
        self.host, self.port, user, password, tls = parse_url(url)
        self.session_factory = session_factory
        self.settings = settings
        self.registry = registry or get_registry(tuple(settings.disabled_packs))
        self.client_id = client_id or settings.mqtt_client_id or f"saola-{settings.node_id}"
        self.session_expiry = session_expiry
        self.keepalive = keepalive
        self.stats = DoorStats()
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self._queue: queue.SimpleQueue[Received] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._keys: dict[str, _Key] = {}  # this round's answers (the kernel's lookup cache keeps them between rounds)
        self._keys_session: Session | None = None
        self._names: dict[str, tuple[int | None, float]] = {}
        self._worker = threading.Thread(target=self._work, name="saola-mqtt-worker", daemon=True)
        self.client = FastSubscriber(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id,
                                     protocol=mqtt.MQTTv5, manual_ack=True, sink=self._on_publish)
        if user is not None:
            self.client.username_pw_set(user, password)
        if tls:
            self.client.tls_set()
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *_args: self.subscribed.set()
        self.client.on_disconnect = self._on_disconnect
        self.client.reconnect_delay_set(1, 30)
        self.on_round: Callable[[int], None] | None = None  # called after each round with its message count

    # -- lifecycle -------------------------------------------------------------------------------------------

    def start(self) -> MqttDoor:
        """Connect in the background (retrying while the broker is away) and start the worker."""
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.session_expiry
        # MQTT 5 lets the subscriber say how many unacknowledged messages it takes; with 3.1.1 Mosquitto sends 20.
        props.ReceiveMaximum = 65535
        self.client.connect_async(self.host, self.port, keepalive=self.keepalive,
                                  clean_start=self.session_expiry == 0, properties=props)
        self.client.loop_start()
        self._worker.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the round in progress, disconnect and stop both threads."""
        self._stop.set()
        self._worker.join(timeout)
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()

    def _on_connect(self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if getattr(reason, "is_failure", False):
            log.error("MQTT broker %s:%s refused the connection: %s", self.host, self.port, reason)
            return
        client.subscribe(SUBSCRIPTION, qos=1)
        self.connected.set()
        log.info("MQTT door connected to %s:%s as %s", self.host, self.port, self.client_id)

    def _on_disconnect(self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        self.connected.clear()
        self.subscribed.clear()
        if not self._stop.is_set():
            log.warning("MQTT door lost the broker (%s); reconnecting", reason)

    def _on_publish(self, topic: bytes, payload: bytes, mid: int, qos: int) -> None:
        # The network thread: queue and return at once.
        self._queue.put(Received(topic, payload, mid, qos, time.time()))

    # -- the worker ------------------------------------------------------------------------------------------

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                first = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            batch = [first]
            get = self._queue.get_nowait
            try:
                while len(batch) < MAX_DRAIN:
                    batch.append(get())
            except queue.Empty:
                pass
            self._round(batch)

    def _round(self, batch: list[Received]) -> None:
        """Handle a round of messages until it is stored (retrying while the database is away), then ack it."""
        pause = 0.5
        while True:
            try:
                self._handle(batch)
                break
            except Exception as exc:  # the database or something unforeseen: keep the messages, try again
                self.stats.retries += 1
                self.stats.last_error = f"{type(exc).__name__}: {exc}"[:500]
                log.exception("MQTT round of %d message(s) failed; retrying in %.1f s", len(batch), pause)
                if self._stop.wait(pause):
                    return  # not acknowledged: the broker sends them again to the next session
                pause = min(pause * 2, 30.0)
        self._ack([m.mid for m in batch if m.qos == 1])
        self.stats.received += len(batch)
        self.stats.rounds += 1
        if self.on_round is not None:
            self.on_round(len(batch))

    def _ack(self, mids: list[int]) -> None:
        """Acknowledge a round's QoS 1 messages, in arrival order, after it is stored."""
        self.client.ack_many(mids)

    def _handle(self, batch: list[Received]) -> None:
        self._keys.clear()
        try:
            self._handle_round(batch)
        finally:
            if self._keys_session is not None:
                self._keys_session.close()
                self._keys_session = None

    def _handle_round(self, batch: list[Received]) -> None:
        dead: list[DeadLetterIn] = []
        groups: dict[tuple[int, str], list[_Accepted]] = {}
        for message in batch:
            accepted = self._parse(message, dead)
            if accepted is not None:
                groups.setdefault((accepted.source_id, accepted.kind), []).append(accepted)
        for group in groups.values():
            self._ingest_group(group, dead)
        if dead:
            with transaction(self.session_factory) as session:
                record_dead_letters(session, letters=dead)
            self.stats.dead_letters += len(dead)

    def _dead(self, message: Received, reason: str, *, name: str | None = None, source_id: int | None = None,
              authenticated: bool = False, errors: list[dict[str, Any]] | None = None) -> DeadLetterIn:
        if source_id is None and name is not None:
            source_id = self._claimed(name)
        return DeadLetterIn(channel=CHANNEL, reason=reason, payload=message.payload,
                            topic=message.topic.decode("utf-8", "replace"), source_name=name, source_id=source_id,
                            authenticated=authenticated, errors=errors or [])

    def _parse(self, message: Received, dead: list[DeadLetterIn]) -> _Accepted | None:
        """Topic, JSON, envelope and key checks; a refused message becomes a dead letter."""
        parts = message.topic.split(b"/")
        if len(parts) != 3 or parts[0] != PREFIX.encode() or not parts[1]:
            dead.append(self._dead(message, "topic must be saola/<source>/observations or saola/<source>/events"))
            return None
        name = parts[1].decode("utf-8", "replace")
        kind = parts[2].decode("utf-8", "replace")
        if kind not in KINDS:
            dead.append(self._dead(message, f"unknown kind {kind!r}: use observations or events", name=name))
            return None
        if len(message.payload) > self.settings.max_body_bytes:
            dead.append(self._dead(message, f"message larger than {self.settings.max_body_bytes} bytes", name=name))
            return None
        try:
            body = orjson.loads(message.payload)
        except orjson.JSONDecodeError as exc:
            dead.append(self._dead(message, f"invalid JSON: {exc}", name=name,
                                   errors=[{"loc": ["payload"], "msg": str(exc), "type": "json_invalid"}]))
            return None
        if not isinstance(body, dict):
            dead.append(self._dead(message, 'expected a JSON object: {"api_key": ..., "items": [...]} or one item '
                                            'with "api_key"', name=name))
            return None
        key = body.pop("api_key", None)
        if "items" in body:
            items = body.pop("items")
            if body:
                dead.append(self._dead(message, f"unknown envelope field(s): {', '.join(sorted(body))[:200]}",
                                       name=name))
                return None
            if not isinstance(items, list) or not 1 <= len(items) <= MAX_BATCH:
                dead.append(self._dead(message, f"items must be a list of 1 to {MAX_BATCH} items", name=name))
                return None
        else:
            items = [body]
        if not isinstance(key, str) or not key:
            dead.append(self._dead(message, "missing api_key", name=name))
            return None
        known = self._key(key)
        if known.reason is not None:
            dead.append(self._dead(message, known.reason, name=name))
            return None
        if known.name != name:
            dead.append(self._dead(message, "key does not match source", name=name))
            return None
        assert known.source_id is not None and known.actor is not None
        return _Accepted(message, known.source_id, name, kind, items, known.actor)

    def _key(self, key: str) -> _Key:
        """Who a key belongs to: the kernel's answer (saola.core.authenticate_key, cached a few seconds and dropped
        when the source is disabled or its key rotated), asked once per key and round."""
        known = self._keys.get(key)
        if known is not None:
            return known
        if self._keys_session is None:
            self._keys_session = self.session_factory()
        try:
            identity = authenticate_key(self._keys_session, key, demo_mode=self.settings.demo_mode)
        except Unauthorized as exc:
            known = _Key(None, None, None, exc.message)
        else:
            known = _Key(identity.source_id, identity.name, identity.actor, None)
        self._keys[key] = known
        return known

    def _claimed(self, name: str) -> int | None:
        """The id of the source a topic names (for dead letters of unauthenticated messages), if it exists."""
        now = time.monotonic()
        cached = self._names.get(name)
        if cached is not None and cached[1] > now:
            return cached[0]
        if len(self._names) > 10_000:
            self._names.clear()
        with self.session_factory() as session:
            source_id = session.scalar(select(Source.id).where(Source.name == name[:80]))
        self._names[name] = (source_id, now + NAME_TTL)
        return source_id

    # -- writing ---------------------------------------------------------------------------------------------

    def _write(self, session: Session, kind: str, actor: Actor, items: list[Any]) -> tuple[int, int]:
        if kind == "observations":
            result = observations.ingest(session, actor=actor, items=items)
            return result.accepted, result.duplicates
        outcome = events.emit(session, actor=actor, registry=self.registry, items=with_event_keys(items))
        return outcome.accepted, outcome.duplicates

    def _ingest_group(self, group: list[_Accepted], dead: list[DeadLetterIn]) -> None:
        """One ingest call per chunk of up to MAX_BATCH items; refused chunks are retried message by message."""
        actor = group[0].actor
        chunk: list[_Accepted] = []
        size = 0
        for accepted in group:
            if size + len(accepted.items) > MAX_BATCH and chunk:
                self._ingest_chunk(chunk, actor, dead)
                chunk, size = [], 0
            chunk.append(accepted)
            size += len(accepted.items)
        if chunk:
            self._ingest_chunk(chunk, actor, dead)

    def _ingest_chunk(self, chunk: list[_Accepted], actor: Actor, dead: list[DeadLetterIn]) -> None:
        kind = chunk[0].kind
        items = [item for accepted in chunk for item in accepted.items]
        try:
            with transaction(self.session_factory) as session:
                accepted_n, duplicates = self._write(session, kind, actor, items)
        except Exception as exc:
            if _transient(exc):
                raise  # the database is away: the round is retried, nothing is acknowledged
            if len(chunk) == 1:
                self._ingest_one(chunk[0], actor, dead)
                return
            for accepted in chunk:
                self._ingest_one(accepted, actor, dead)
            return
        self.stats.messages_stored += len(chunk)
        self.stats.items_accepted += accepted_n
        self.stats.items_duplicate += duplicates

    def _ingest_one(self, accepted: _Accepted, actor: Actor, dead: list[DeadLetterIn]) -> None:
        try:
            with transaction(self.session_factory) as session:
                accepted_n, duplicates = self._write(session, accepted.kind, actor, accepted.items)
        except DomainError as exc:
            errors = [_relative(e.as_dict()) for e in exc.errors]
            reason = exc.message if isinstance(exc, ValidationFailed) else f"{exc.code}: {exc.message}"
            dead.append(self._dead(accepted.message, reason, name=accepted.source_name, source_id=accepted.source_id,
                                   authenticated=True, errors=errors))
            return
        except Exception as exc:
            if _transient(exc):
                raise
            # Something the checks let through but the database refused: keep it aside rather than retry forever.
            log.exception("MQTT message from %s refused by the database", accepted.source_name)
            dead.append(self._dead(accepted.message, f"refused by the database: {type(exc).__name__}",
                                   name=accepted.source_name, source_id=accepted.source_id, authenticated=True))
            return
        self.stats.messages_stored += 1
        self.stats.items_accepted += accepted_n
        self.stats.items_duplicate += duplicates


def _transient(exc: Exception) -> bool:
    """True for failures worth retrying (the database unreachable), False for ones about the message itself."""
    if isinstance(exc, DomainError):
        return False
    if isinstance(exc, sa_exc.DBAPIError):
        return isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError) or exc.connection_invalidated
    return isinstance(exc, OSError | sa_exc.TimeoutError | sa_exc.DisconnectionError)


def _relative(error: dict[str, Any]) -> dict[str, Any]:
    """An error's path relative to the message: ['items', i, field] (the kernel may prefix 'body')."""
    loc = list(error.get("loc", []))
    if loc[:1] == ["body"]:
        loc = loc[1:]
    return {**error, "loc": loc}


_doors: list[MqttDoor] = []


def start_door(settings: Settings, session_factory: sessionmaker[Session]) -> MqttDoor | None:
    """Start the MQTT door when SAOLA_MQTT_URL is set (one per process); returns it."""
    if not settings.mqtt_url:
        return None
    door = MqttDoor(settings.mqtt_url, session_factory=session_factory, settings=settings).start()
    _doors.append(door)
    return door


def stop_doors() -> None:
    """Stop every door this process started."""
    while _doors:
        _doors.pop().stop()
