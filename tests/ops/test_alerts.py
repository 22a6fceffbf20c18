"""Alerts: acknowledge and resolve (with history), scope, webhooks signed with HMAC and retried with backoff against a
real HTTP receiver, and e-mail through a real local SMTP server."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from saola.core.alerts.models import Alert, AlertDelivery, WebhookSubscription
from saola.core.alerts.notify import backoff_seconds, deliver_due, sign
from saola.db.types import utcnow
from tests.ops import test_rules_helpers as shared
from tests.ops.test_rules_helpers import (
    OTHER,
    WARD,
    WARD2,
    Heard,
    alerts_of,
    feed,
    make_indicator,
    make_rule,
    open_alerts,
)

declared_types = shared.declared_types
engine = shared.engine
headers_for = shared.headers_for


@pytest.fixture
def no_background_jobs(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the server's job runner from sending deliveries while a test drives deliver_due itself.

    Request it before any fixture that opens the test client (the runner starts with the client's lifespan).
    """
    monkeypatch.setattr(settings, "run_jobs", False)


def _firing(session_factory: sessionmaker[Session], registry: Any, unit: str = WARD, **rule: Any) -> Alert:
    """A fresh rule and one firing alert of it in `unit`."""
    code = make_indicator(session_factory)
    rule_id = make_rule(session_factory, registry, kind="threshold", params={"indicator": code, "threshold": 10},
                        unit_code=unit, **rule)
    feed(session_factory, code, [(0, 50)], unit=unit)
    [alert] = alerts_of(session_factory, rule_id)
    return alert


def test_acknowledge_then_resolve_by_hand_with_history(client, headers_for, session_factory, engine,
                                                      declared_types) -> None:
    alert = _firing(session_factory, declared_types)
    operator = headers_for("operator", "68")
    with Heard("alerts.*") as heard:
        r = client.post(f"/api/alerts/{alert.id}/acknowledge", json={"note": "Đã cử cán bộ"}, headers=operator)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["status"] == "acknowledged" and body["acknowledged_by"] and body["acknowledged_at"]
        assert client.post(f"/api/alerts/{alert.id}/acknowledge", json={}, headers=operator).status_code == 409
        r = client.post(f"/api/alerts/{alert.id}/resolve", json={"note": "Đã xử lý xong"}, headers=operator)
        assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "resolved" and body["resolution"] == "manual" and body["resolve_note"] == "Đã xử lý xong"
    assert client.post(f"/api/alerts/{alert.id}/resolve", json={"note": "x"}, headers=operator).status_code == 409
    assert client.post(f"/api/alerts/{alert.id}/acknowledge", json={}, headers=operator).status_code == 409
    assert heard.topics() == ["alerts.acknowledged", "alerts.resolved"]
    assert heard.messages[1].data["resolution"] == "manual" and heard.messages[1].data["unit_code"] == WARD
    history = client.get(f"/api/alerts/{alert.id}/history", headers=operator).json()
    assert [h["action"] for h in history] == ["firing", "acknowledged", "resolved"]
    assert history[0]["actor"] == "rules" and history[0]["value"] == 50
    assert history[1]["note"] == "Đã cử cán bộ" and history[2]["note"] == "Đã xử lý xong"
    r = client.get("/api/alerts", params={"rule": str(alert.rule_id), "status": "resolved"}, headers=operator)
    assert [a["id"] for a in r.json()["items"]] == [str(alert.id)]


def test_bad_alert_requests_are_refused_and_change_nothing(client, headers_for, session_factory, engine,
                                                           declared_types) -> None:
    alert = _firing(session_factory, declared_types)
    for body in ({}, {"note": ""}, {"note": "x" * 2001}, {"note": "a\x00"}, {"note": "ok", "extra": 1}):
        r = client.post(f"/api/alerts/{alert.id}/resolve", json=body, headers=headers_for())
        assert r.status_code == 422, body
        assert r.json()["errors"][0]["loc"][0] == "body"
    r = client.post(f"/api/alerts/{alert.id}/acknowledge", json={"note": 5}, headers=headers_for())
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == ["body", "note"]
    assert client.post(f"/api/alerts/{uuid.uuid4()}/resolve", json={"note": "x"},
                       headers=headers_for()).status_code == 404
    assert client.get("/api/alerts/not-a-uuid", headers=headers_for()).status_code == 422
    for params in ({"status": "burning"}, {"severity": "extreme"}, {"unit": "68;--"}, {"limit": 0},
                   {"subject": "x:1"}):
        r = client.get("/api/alerts", params=params, headers=headers_for())
        assert r.status_code == 422, params
    assert client.get("/api/alerts", params={"unit": "99999"}, headers=headers_for()).status_code == 404
    with session_factory() as session:
        same = session.get(Alert, alert.id)
        assert same is not None and same.status == "firing" and same.acknowledged_at is None


def test_commune_staff_see_and_act_only_in_their_commune(client, headers_for, session_factory, engine,
                                                        declared_types) -> None:
    mine = _firing(session_factory, declared_types, unit=WARD)
    theirs = _firing(session_factory, declared_types, unit=WARD2)
    far = _firing(session_factory, declared_types, unit=OTHER)
    staff = headers_for("agency_staff", WARD)
    listed = {a["id"] for a in client.get("/api/alerts", params={"limit": 1000}, headers=staff).json()["items"]}
    assert str(mine.id) in listed and str(theirs.id) not in listed and str(far.id) not in listed
    assert client.get("/api/alerts", params={"unit": WARD2}, headers=staff).status_code == 404
    for alert in (theirs, far):
        assert client.get(f"/api/alerts/{alert.id}", headers=staff).status_code == 404
        assert client.get(f"/api/alerts/{alert.id}/history", headers=staff).status_code == 404
        assert client.post(f"/api/alerts/{alert.id}/acknowledge", json={}, headers=staff).status_code == 404
        assert client.post(f"/api/alerts/{alert.id}/resolve", json={"note": "x"}, headers=staff).status_code == 404
    assert client.post(f"/api/alerts/{mine.id}/acknowledge", json={}, headers=staff).status_code == 200
    assert [a.status for a in open_alerts(session_factory, theirs.rule_id)] == ["firing"]  # type: ignore[arg-type]
    viewer = headers_for("viewer", "68")
    assert client.get(f"/api/alerts/{theirs.id}", headers=viewer).status_code == 200
    assert client.post(f"/api/alerts/{theirs.id}/acknowledge", json={}, headers=viewer).status_code == 403
    leader_79 = headers_for("leader", "79")
    assert client.get(f"/api/alerts/{theirs.id}", headers=leader_79).status_code == 404
    assert client.post(f"/api/alerts/{far.id}/acknowledge", json={}, headers=leader_79).status_code == 200


def test_resolved_by_hand_stays_quiet_until_the_condition_clears(session_factory, engine, declared_types, client,
                                                                headers_for) -> None:
    code = make_indicator(session_factory)
    rule_id = make_rule(session_factory, declared_types, kind="threshold", params={"indicator": code, "threshold": 10})
    feed(session_factory, code, [(0, 50)])
    [alert] = alerts_of(session_factory, rule_id)
    r = client.post(f"/api/alerts/{alert.id}/resolve", json={"note": "Cảm biến lỗi, đã báo"}, headers=headers_for())
    assert r.status_code == 200
    feed(session_factory, code, [(60, 60), (120, 70)])  # still above: no new alert for the same episode
    assert len(alerts_of(session_factory, rule_id)) == 1
    feed(session_factory, code, [(180, 5), (240, 55)])  # cleared, then a new episode
    assert [a.status for a in alerts_of(session_factory, rule_id)] == ["resolved", "firing"]


# ---------------------------------------------------------------------------------------------------------------
# webhooks


class _Receiver:
    """A real HTTP server on 127.0.0.1 that answers 500 to the first POST and 200 afterwards."""

    def __init__(self, fail_first: int = 1) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.fail_first = fail_first
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                code = 500 if len(receiver.requests) <= receiver.fail_first else 200
                self.send_response(code)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *_: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> _Receiver:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wait(self, count: int, seconds: float = 10.0) -> None:
        """Wait until `count` requests arrived."""
        deadline = time.monotonic() + seconds
        while len(self.requests) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(self.requests) >= count, self.requests


def _deliveries(session_factory: sessionmaker[Session], webhook_id: str) -> list[AlertDelivery]:
    with session_factory() as session:
        return list(session.scalars(select(AlertDelivery).where(AlertDelivery.subscription_id == uuid.UUID(webhook_id))
                                    .order_by(AlertDelivery.created_at)))


def test_webhook_is_signed_and_retried_with_backoff(no_background_jobs, client, headers_for, settings, session_factory,
                                                    engine, declared_types) -> None:
    integrator = headers_for("integrator", "68")
    code = make_indicator(session_factory)
    rule_id = make_rule(session_factory, declared_types, kind="threshold", params={"indicator": code, "threshold": 10})
    with _Receiver(fail_first=1) as receiver:
        r = client.post("/api/webhooks", json={"name": "Hệ thống ứng cứu", "url": receiver.url, "unit_code": "68",
                                               "topics": ["alerts.firing"], "rule_id": str(rule_id)},
                        headers=integrator)
        assert r.status_code == 201, r.text
        hook = r.json()
        secret = hook["secret"]
        assert len(secret) >= 32
        assert "secret" not in client.get(f"/api/webhooks/{hook['id']}", headers=integrator).json()
        feed(session_factory, code, [(0, 50), (60, 5)])  # fired (delivered) and resolved (not subscribed)
        [delivery] = _deliveries(session_factory, hook["id"])
        assert delivery.topic == "alerts.firing" and delivery.status == "pending"

        start = utcnow()
        deliver_due(session_factory, settings=settings, now=start)  # the receiver fails this one ...
        receiver.wait(1)
        [delivery] = _deliveries(session_factory, hook["id"])
        assert delivery.status == "pending" and delivery.attempts == 1 and delivery.last_status == 500
        assert delivery.next_attempt_at == start + timedelta(seconds=backoff_seconds(1))
        assert deliver_due(session_factory, settings=settings, now=start + timedelta(seconds=5))["delivered"] == 0
        later = start + timedelta(seconds=backoff_seconds(1) + 1)
        assert deliver_due(session_factory, settings=settings, now=later) == {"delivered": 1, "retrying": 0,
                                                                              "failed": 0}
        receiver.wait(2)
    [delivery] = _deliveries(session_factory, hook["id"])
    assert delivery.status == "delivered" and delivery.attempts == 2 and delivery.last_status == 200
    (h1, b1), (h2, b2) = receiver.requests
    assert b1 == b2 and h1["x-saola-delivery"] == h2["x-saola-delivery"] == str(delivery.id)
    expected = "sha256=" + hmac.new(secret.encode(), b2, hashlib.sha256).hexdigest()
    assert h2["x-saola-signature"] == expected == sign(secret, b2)
    assert h2["x-saola-event"] == "alerts.firing" and h2["x-saola-timestamp"].isdigit()
    assert h2["content-type"] == "application/json"
    payload = json.loads(b2)
    assert payload["topic"] == "alerts.firing" and payload["alert"]["rule_id"] == str(rule_id)
    assert payload["alert"]["unit_code"] == WARD and payload["delivery_id"] == str(delivery.id)
    r = client.get(f"/api/webhooks/{hook['id']}/deliveries", headers=integrator)
    assert [d["status"] for d in r.json()] == ["delivered"]


def test_webhook_gives_up_after_the_last_attempt(no_background_jobs, client, headers_for, settings,
                                                 session_factory, engine, declared_types, monkeypatch) -> None:
    monkeypatch.setattr(settings, "webhook_max_attempts", 2)
    code = make_indicator(session_factory)
    rule_id = make_rule(session_factory, declared_types, kind="threshold", params={"indicator": code, "threshold": 10})
    with _Receiver(fail_first=100) as receiver:
        r = client.post("/api/webhooks", json={"name": "Luôn lỗi", "url": receiver.url, "unit_code": WARD,
                                               "rule_id": str(rule_id), "secret": "s" * 20}, headers=headers_for())
        assert r.status_code == 201 and r.json()["secret"] == "s" * 20
        feed(session_factory, code, [(0, 50)])
        now = utcnow() + timedelta(days=1)
        deliver_due(session_factory, settings=settings, now=now)
        deliver_due(session_factory, settings=settings, now=now + timedelta(hours=1))
        receiver.wait(2)
    [delivery] = _deliveries(session_factory, r.json()["id"])
    assert delivery.status == "failed" and delivery.attempts == 2


def test_webhook_filters_by_scope_severity_and_topic(client, headers_for, session_factory, engine,
                                                     declared_types) -> None:
    hooks = {}
    for name, body in {
        "ward": {"unit_code": WARD, "topics": ["alerts.*"]},
        "other_ward": {"unit_code": WARD2, "topics": ["alerts.*"]},
        "critical_only": {"unit_code": "68", "topics": ["alerts.*"], "min_severity": "critical"},
        "resolved_only": {"unit_code": "68", "topics": ["alerts.resolved"]},
    }.items():
        r = client.post("/api/webhooks", json={"name": name, "url": "http://127.0.0.1:9/none", **body},
                        headers=headers_for())
        assert r.status_code == 201, r.text
        hooks[name] = r.json()["id"]
    try:
        code = make_indicator(session_factory)
        make_rule(session_factory, declared_types, kind="threshold", params={"indicator": code, "threshold": 10},
                  severity="high")
        feed(session_factory, code, [(0, 50)])
        topics = {name: [d.topic for d in _deliveries(session_factory, hid)] for name, hid in hooks.items()}
        assert topics == {"ward": ["alerts.firing"], "other_ward": [], "critical_only": [], "resolved_only": []}
    finally:
        for hid in hooks.values():
            assert client.delete(f"/api/webhooks/{hid}", headers=headers_for()).status_code == 204


@pytest.mark.parametrize(("body", "loc"), [
    ({"url": "ftp://example.org/x"}, ["body", "url"]),
    ({"url": "file:///etc/passwd"}, ["body", "url"]),
    ({"url": "javascript:alert(1)"}, ["body", "url"]),
    ({"url": "not a url"}, ["body", "url"]),
    ({"topics": ["cases.*"]}, ["body", "topics", 0]),
    ({"topics": []}, ["body", "topics"]),
    ({"secret": "short"}, ["body", "secret"]),
    ({"min_severity": "huge"}, ["body", "min_severity"]),
    ({"unit_code": "99999"}, ["body", "unit_code"]),
    ({"rule_id": str(uuid.uuid4())}, ["body", "rule_id"]),
])
def test_bad_webhooks_are_refused(client, headers_for, session_factory, body, loc) -> None:
    with session_factory() as session:
        before = session.scalar(select(func.count()).select_from(WebhookSubscription))
    full = {"name": "x", "url": "https://example.org/hook", "unit_code": "68", **body}
    r = client.post("/api/webhooks", json=full, headers=headers_for())
    assert r.status_code == 422, r.text
    assert loc in [e["loc"][:len(loc)] for e in r.json()["errors"]], r.json()
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(WebhookSubscription)) == before


def test_webhooks_belong_to_a_scope(client, headers_for) -> None:
    integrator_68 = headers_for("integrator", "68")
    r = client.post("/api/webhooks", json={"name": "x", "url": "https://example.org/h", "unit_code": "79"},
                    headers=integrator_68)
    assert r.status_code == 403
    r = client.post("/api/webhooks", json={"name": "x", "url": "https://example.org/h", "unit_code": "68"},
                    headers=integrator_68)
    assert r.status_code == 201
    hook = r.json()["id"]
    integrator_79 = headers_for("integrator", "79")
    assert client.get(f"/api/webhooks/{hook}", headers=integrator_79).status_code == 404
    assert client.delete(f"/api/webhooks/{hook}", headers=integrator_79).status_code == 404
    assert hook not in [w["id"] for w in client.get("/api/webhooks", headers=integrator_79).json()]
    operator = headers_for("operator", "68")
    assert client.get("/api/webhooks", headers=operator).status_code == 403
    r = client.patch(f"/api/webhooks/{hook}", json={"url": "gopher://x"}, headers=integrator_68)
    assert r.status_code == 422
    r = client.patch(f"/api/webhooks/{hook}", json={"active": False, "topics": ["alerts.firing"]},
                     headers=integrator_68)
    assert r.status_code == 200 and r.json()["active"] is False
    assert client.delete(f"/api/webhooks/{hook}", headers=integrator_68).status_code == 204


# ---------------------------------------------------------------------------------------------------------------
# e-mail


@pytest.fixture
def smtp_server() -> Iterator[tuple[str, int, list[bytes]]]:
    """A real SMTP server (aiosmtpd) on 127.0.0.1 that keeps what it receives."""
    controller_module = pytest.importorskip("aiosmtpd.controller")
    received: list[bytes] = []

    class Handler:
        async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
            received.append(envelope.original_content or envelope.content)
            return "250 OK"

    with socket.socket() as probe:  # a free port: the controller checks it can connect to the one it is given
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = controller_module.Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield "127.0.0.1", port, received
    finally:
        controller.stop()


def test_serious_alerts_are_emailed(no_background_jobs, settings, session_factory, engine, declared_types, monkeypatch,
                                    smtp_server) -> None:
    host, port, received = smtp_server
    for name, value in {"smtp_host": host, "smtp_port": port, "smtp_to": ["truc.ban@ioc.lamdong.gov.vn"],
                        "smtp_from": "saola@ioc.lamdong.gov.vn", "smtp_min_severity": "high"}.items():
        monkeypatch.setattr(settings, name, value)
    monkeypatch.setattr(engine, "settings", settings)
    minor = _firing(session_factory, declared_types, severity="medium")
    major = _firing(session_factory, declared_types, severity="critical")
    with session_factory() as session:
        emails = list(session.scalars(select(AlertDelivery).where(AlertDelivery.channel == "email",
                                                                  AlertDelivery.alert_id.in_([minor.id, major.id]))))
    assert [e.alert_id for e in emails] == [major.id]
    deliver_due(session_factory, settings=settings, now=datetime.now(UTC) + timedelta(seconds=1))
    messages = [message_from_bytes(raw, policy=policy.default) for raw in received]
    [message] = [m for m in messages if m["X-Saola-Delivery"] == str(emails[0].id)]
    assert message["To"] == "truc.ban@ioc.lamdong.gov.vn" and "[CRITICAL]" in message["Subject"]
    assert "ĐANG CẢNH BÁO" in message["Subject"] and major.title in message.get_content()
    assert str(major.id) in message.get_content()
    with session_factory() as session:
        done = session.get(AlertDelivery, emails[0].id)
        assert done is not None and done.status == "delivered"
