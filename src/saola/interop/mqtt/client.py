"""paho-mqtt tuned for a subscriber that takes tens of thousands of small messages a second.

paho handles the protocol (connect, subscribe, keep-alive, reconnect, acknowledgements) unchanged. Three things
change on the receive path, where stock paho spends most of its time per message: the socket is read 256 KiB at a
time instead of a few bytes per call; one pass of the network loop reads every packet available instead of one;
and QoS 0/1 PUBLISH packets are decoded straight into (topic, payload, mid, qos) for a sink, without building an
MQTTMessage and MQTT 5 property objects nobody reads. QoS 2 takes paho's own path. With TLS the socket is read the
stock way (an SSL socket keeps its own buffer).

Complete QoS 0/1 PUBLISH packets already in the read buffer are decoded in one tight loop without paho's
per-byte reads at all; any other packet, or one cut off at the end of the buffer, goes through paho's reader.

Measured on the project's 2-core machine, stock paho 2.2 received about 4,500 messages/s; this client about
35,000 before the buffer walk (see docs/benchmarks.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.client import PUBACK, MQTTErrorCode, time_func

Sink = Callable[[bytes, bytes, int, int], None]  # topic, payload, mid, qos

READ_SIZE = 256 * 1024


class FastSubscriber(mqtt.Client):
    """A paho Client whose PUBLISH packets (QoS 0 and 1) go to `sink(topic, payload, mid, qos)`."""

    def __init__(self, *args: Any, sink: Sink, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sink = sink
        self._rbuf = b""
        self._rpos = 0

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._ssl:
            return super()._sock_recv(bufsize)
        pos, buf = self._rpos, self._rbuf
        if pos >= len(buf):
            data = super()._sock_recv(READ_SIZE)  # BlockingIOError passes through: paho reads that as "again"
            if len(data) <= bufsize:
                return data
            buf = self._rbuf = data
            pos = 0
        end = pos + bufsize
        self._rpos = end
        return buf[pos:end]

    def _sock_close(self) -> None:
        self._rbuf, self._rpos = b"", 0
        super()._sock_close()

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        """Read every packet available now (stock paho reads about one per network-loop pass)."""
        while True:
            if self._sock is None:
                return MQTTErrorCode.MQTT_ERR_NO_CONN
            if not self._ssl and self._in_packet["command"] == 0 and self._rpos < len(self._rbuf):
                self._publishes_in_buffer()
            rc = self._packet_read()
            if rc > 0:
                return self._loop_rc_handle(rc)
            if rc == MQTTErrorCode.MQTT_ERR_AGAIN:
                return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _publishes_in_buffer(self) -> None:
        """Hand every complete QoS 0/1 PUBLISH at the head of the read buffer to the sink, in one tight loop.

        paho's reader takes a packet a few bytes per call; this one walks the buffer itself and stops at the first
        packet that is something else or not complete yet, which paho's own reader then takes as usual.
        """
        buf, pos, end = self._rbuf, self._rpos, len(self._rbuf)
        sink, v5 = self._sink, self._protocol == mqtt.MQTTv5
        handled = 0
        while pos < end:
            first = buf[pos]
            if first >> 4 != 3 or first & 0x06 == 0x06 or first & 0x06 == 0x04:  # not PUBLISH QoS 0/1
                break
            p, length, shift = pos + 1, 0, 0
            while p < end and shift < 28:
                byte = buf[p]
                p += 1
                length |= (byte & 0x7F) << shift
                shift += 7
                if not byte & 0x80:
                    break
            else:
                break  # the length is cut off at the end of the buffer (or malformed: paho decides)
            if p + length > end or length < 2:
                break
            stop = p + length
            size = (buf[p] << 8) | buf[p + 1]
            q = p + 2 + size
            topic = buf[p + 2:q]
            qos = (first & 0x06) >> 1
            mid = 0
            if qos:
                mid = (buf[q] << 8) | buf[q + 1]
                q += 2
            if v5:  # skip the properties: a variable-length size, then that many bytes
                plen, shift = 0, 0
                while True:
                    byte = buf[q]
                    q += 1
                    plen |= (byte & 0x7F) << shift
                    shift += 7
                    if not byte & 0x80:
                        break
                q += plen
            if q > stop:
                break  # malformed: let paho's reader report it
            sink(topic, buf[q:stop], mid, qos)
            pos = stop
            handled += 1
        self._rpos = pos
        if handled:
            with self._msgtime_mutex:
                self._last_bytes_received = time_func()

    def ack_many(self, mids: list[int]) -> MQTTErrorCode:
        """Acknowledge QoS 1 messages in the order given, with one write (paho's ack() makes two syscalls each)."""
        if not mids:
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        # PUBACK: type 4, remaining length 2, the packet id; MQTT 5 lets the reason code (success) be left out.
        blob = b"".join(b"\x40\x02" + mid.to_bytes(2, "big") for mid in mids)
        return self._packet_queue(PUBACK, blob, 0, 0)

    def _handle_publish(self) -> MQTTErrorCode:
        command = self._in_packet["command"]
        qos = (command & 0x06) >> 1
        if qos > 1:
            return super()._handle_publish()
        packet = self._in_packet["packet"]
        size = (packet[0] << 8) | packet[1]
        topic = bytes(packet[2:2 + size])
        pos = 2 + size
        mid = 0
        if qos:
            mid = (packet[pos] << 8) | packet[pos + 1]
            pos += 2
        if self._protocol == mqtt.MQTTv5:  # skip the properties: a variable-length size, then that many bytes
            length, shift = 0, 0
            while True:
                byte = packet[pos]
                pos += 1
                length |= (byte & 0x7F) << shift
                shift += 7
                if not byte & 0x80:
                    break
            pos += length
        self._sink(topic, bytes(packet[pos:]), mid, qos)
        return MQTTErrorCode.MQTT_ERR_SUCCESS
