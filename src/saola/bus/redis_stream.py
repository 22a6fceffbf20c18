"""A bus shared by several worker processes through one Redis Stream.

`publish` appends the message to the stream (XADD, trimmed to about `max_messages` entries); every process runs one
reader thread (XREAD BLOCK) that hands each entry, in stream order, to that process's subscribers, the publisher's
own included (for those the reader hands on the data as published instead of decoding it again). So every worker
sees every message exactly once and in the same order, and the stream entry id is the message id (the live stream's
event id): `replay` serves ids after a given one from the reader's recent messages or, when older, from the stream
itself.
"""

from __future__ import annotations

import fnmatch
import logging
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import redis

from saola.bus import codec
from saola.bus.memory import (
    REPLAY_ITEMS,
    REPLAY_MESSAGES,
    REPLAY_SECONDS,
    Handler,
    Message,
    Replay,
    ReplayRing,
    item_count,
    parse_id,
)

log = logging.getLogger(__name__)

STREAM = "saola:bus"
MIN_KEPT = 10  # entries the stream keeps however large they are


class RedisBus:
    """Publish to a Redis Stream; a reader thread delivers each entry to this process's subscribers in order."""

    def __init__(self, url: str, *, stream: str = STREAM, max_messages: int = REPLAY_MESSAGES,
                 replay_seconds: float = REPLAY_SECONDS, replay_items: int = REPLAY_ITEMS,
                 block_ms: int = 1000) -> None:
        self.url, self.stream, self.max_messages, self.block_ms = url, stream, max_messages, block_ms
        self.replay_items = replay_items
        self._client = redis.Redis.from_url(url)
        self._reader_client = redis.Redis.from_url(url)
        self._subscribers: list[tuple[str, Handler]] = []
        self._lock = threading.Lock()
        self._me = uuid.uuid4().hex[:12]  # names this bus's entries in the stream
        self._own: OrderedDict[int, dict[str, Any]] = OrderedDict()  # data published here, by sequence number
        self._own_seq = 0
        self._own_lock = threading.Lock()
        self.ring = ReplayRing(max_messages, replay_seconds, replay_items)
        newest = self._client.xrevrange(stream, count=1)
        self._last = newest[0][0].decode() if newest else "0-0"
        self._start = parse_id(self._last) or (0, 0)
        self._stop = threading.Event()
        self.delivered = 0
        self._thread = threading.Thread(target=self._read_forever, name="saola-redis-bus", daemon=True)
        self._thread.start()

    # -- the interface shared with InProcessBus -------------------------------------------------------------

    def subscribe(self, pattern: str, handler: Handler) -> Callable[[], None]:
        """Call handler (in the reader thread) for each message whose topic matches; returns an unsubscribe."""
        item = (pattern, handler)
        with self._lock:
            self._subscribers.append(item)

        def unsubscribe() -> None:
            with self._lock:
                if item in self._subscribers:
                    self._subscribers.remove(item)

        return unsubscribe

    def publish(self, topic: str, data: dict[str, Any]) -> Message:
        """Append the message to the stream; subscribers of every process get it from their reader thread."""
        # The stream keeps the same window as the in-memory ring: at most max_messages entries and, for messages
        # that carry items (an ingested batch), about replay_items items, or a few thousand 10,000-reading
        # batches would hold gigabytes in Redis.
        n = item_count(data)
        keep = max(MIN_KEPT, min(self.max_messages, self.replay_items // n)) if n else self.max_messages
        # This process's reader hands the data itself to subscribers rather than decoding it again: the entry names
        # this bus and a sequence number, registered before the XADD (the reader may see the entry before it returns).
        with self._own_lock:
            self._own_seq += 1
            seq = self._own_seq
            self._own[seq] = data
        try:
            entry_id = self._client.xadd(self.stream, {"t": topic, "d": codec.encode(data), "o": f"{self._me}:{seq}"},
                                         maxlen=keep, approximate=True)
        except BaseException:
            with self._own_lock:
                self._own.pop(seq, None)
            raise
        return Message(topic, data, entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id))

    def last_id(self) -> str:
        """The id of the newest entry this process has read."""
        return self._last

    def replay(self, after: str | None, limit: int = 1000) -> Replay:
        """Entries after the id `after`, oldest first: from memory when recent, else from the stream."""
        key = parse_id(after)
        if key is None:
            return Replay(self.ring.after(None, limit).messages, False)
        evicted = self.ring.evicted_through
        if key >= self._start and (evicted is None or key >= evicted):
            return self.ring.after(key, limit)
        entries = self._client.xrange(self.stream, min=f"({key[0]}-{key[1]}", max="+", count=limit)
        oldest = self._client.xrange(self.stream, count=1)
        first = parse_id(oldest[0][0].decode()) if oldest else None
        complete = first is None or key >= first  # older than the oldest kept: some may have been trimmed
        return Replay([self._decode(eid, fields) for eid, fields in entries], complete)

    def close(self) -> None:
        """Stop the reader thread and close the connections."""
        self._stop.set()
        self._thread.join(timeout=self.block_ms / 1000 + 5)
        self._client.close()
        self._reader_client.close()

    # -- the reader -----------------------------------------------------------------------------------------

    @staticmethod
    def _decode(entry_id: bytes, fields: dict[bytes, bytes]) -> Message:
        return Message(fields[b"t"].decode(), codec.decode(fields[b"d"]), entry_id.decode())

    def _read(self, entry_id: bytes, fields: dict[bytes, bytes]) -> Message:
        """The entry as a message: the data as published when this process published it, else decoded."""
        publisher, _, seq_text = fields.get(b"o", b"").decode().partition(":")
        if publisher != self._me or not seq_text.isdigit():
            return self._decode(entry_id, fields)
        seq = int(seq_text)
        with self._own_lock:
            data = self._own.pop(seq, None)
            # Entries of ours published earlier and not read by now were trimmed before the reader got to them (or
            # land later, from a slower thread, and are decoded): never asked for again.
            while self._own and next(iter(self._own)) < seq:
                self._own.popitem(last=False)
        if data is None:
            return self._decode(entry_id, fields)
        return Message(fields[b"t"].decode(), data, entry_id.decode())

    def _read_forever(self) -> None:
        pause = 0.5
        while not self._stop.is_set():
            try:
                answer = self._reader_client.xread({self.stream: self._last}, count=1000, block=self.block_ms)
                pause = 0.5
            except redis.RedisError:
                if self._stop.is_set():
                    return
                log.exception("reading the Redis bus failed; retrying in %.1f s", pause)
                self._stop.wait(pause)
                pause = min(pause * 2, 30.0)
                continue
            for _stream, entries in answer or []:
                for entry_id, fields in entries:
                    try:
                        message = self._read(entry_id, fields)
                    except (KeyError, ValueError):
                        log.warning("skipping a malformed bus entry %s", entry_id)
                        self._last = entry_id.decode()
                        continue
                    self._deliver(message)

    def _deliver(self, message: Message) -> None:
        key = parse_id(message.id)
        if key is not None:
            self.ring.append(key, message)
        self._last = message.id
        with self._lock:
            targets = [h for p, h in self._subscribers if fnmatch.fnmatchcase(message.topic, p)]
        for handler in targets:
            try:
                handler(message)
            except Exception:  # a broken subscriber must not stop the reader
                log.exception("bus subscriber failed on %s", message.topic)
        self.delivered += 1

