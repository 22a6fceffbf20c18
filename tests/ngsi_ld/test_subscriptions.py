"""NGSI-LD subscriptions: CRUD, matching (type, watchedAttributes, q, scope) and HTTP notifications after commit."""

from __future__ import annotations

import time
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from saola.interop.ngsi_ld.models import NgsiNotification
from tests.ngsi_ld.conftest import BASE, CORE, LINK_REL, OTHER_WARD, Receiver, js, ld, new_type, problem, station


def subscription(kind: str, uri: str, **extra: Any) -> dict[str, Any]:
    return {"type": "Subscription", "entities": [{"type": kind}],
            "notification": {"endpoint": {"uri": uri, "accept": "application/json"}}, "@context": CORE, **extra}


def subscribe(client: TestClient, headers: dict[str, str], body: dict[str, Any]) -> str:
    r = client.post(f"{BASE}/subscriptions/", json=body, headers=ld(headers))
    assert r.status_code == 201, r.text
    return r.headers["Location"].rsplit("/", 1)[-1]


def test_subscription_crud(client: TestClient, admin_headers) -> None:
    kind = new_type()
    body = subscription(kind, "http://127.0.0.1:9/n", watchedAttributes=["temperature"], q="temperature>30",
                        id=f"urn:ngsi-ld:Subscription:{kind}", name="nóng")
    sub_id = subscribe(client, admin_headers, body)
    assert sub_id == body["id"]
    r = client.get(f"{BASE}/subscriptions/{sub_id}", headers=ld(admin_headers))
    got = r.json()
    assert r.status_code == 200 and got["@context"] == CORE and got["q"] == "temperature>30"
    assert got["status"] == "active" and got["notification"]["timesSent"] == 0
    listed = client.get(f"{BASE}/subscriptions", headers=ld(admin_headers)).json()
    assert sub_id in [s["id"] for s in listed]
    problem(client.post(f"{BASE}/subscriptions", json=body, headers=ld(admin_headers)), "AlreadyExists", 409)
    r = client.patch(f"{BASE}/subscriptions/{sub_id}", json={"isActive": False, "@context": CORE},
                     headers=ld(admin_headers))
    assert r.status_code == 204, r.text
    assert client.get(f"{BASE}/subscriptions/{sub_id}", headers=ld(admin_headers)).json()["status"] == "paused"
    assert client.delete(f"{BASE}/subscriptions/{sub_id}", headers=admin_headers).status_code == 204
    problem(client.get(f"{BASE}/subscriptions/{sub_id}", headers=ld(admin_headers)), "ResourceNotFound", 404)


def test_bad_subscriptions_are_400(client: TestClient, admin_headers) -> None:
    kind = new_type()
    good = subscription(kind, "http://127.0.0.1:9/n")
    for bad in ({**good, "type": "Other"}, {k: v for k, v in good.items() if k != "notification"},
                {k: v for k, v in good.items() if k != "entities"},
                subscription(kind, "ftp://example.org/n"), {**good, "q": "temperature>>"},
                {**good, "entities": [{"idPattern": "(a+)+"}]},
                {**good, "notification": {"endpoint": {"uri": "http://x/n"}, "format": "weird"}},
                {**good, "expiresAt": "tomorrow"}):
        problem(client.post(f"{BASE}/subscriptions", json=bad, headers=ld(admin_headers)), "BadRequestData", 400)


def test_subscriptions_are_scoped(client: TestClient, admin_headers, make_user) -> None:
    sub_id = subscribe(client, admin_headers, subscription(new_type(), "http://127.0.0.1:9/n"))
    commune = make_user("integrator", "24781")
    problem(client.get(f"{BASE}/subscriptions/{sub_id}", headers=ld(commune)), "ResourceNotFound", 404)
    viewer = make_user("viewer", "68")
    r = client.post(f"{BASE}/subscriptions", json=subscription(new_type(), "http://127.0.0.1:9/n"),
                    headers=ld(viewer))
    assert r.status_code == 403, r.text
    client.delete(f"{BASE}/subscriptions/{sub_id}", headers=admin_headers)


def test_notifications_follow_changes_after_commit(client: TestClient, admin_headers, receiver: Receiver) -> None:
    kind = new_type()
    sub_id = subscribe(client, admin_headers, subscription(kind, receiver.url, watchedAttributes=["temperature"]))
    body = station(kind)
    assert client.post(f"{BASE}/entities", json=body, headers=ld(admin_headers)).status_code == 201
    receiver.wait_for(lambda got: len(got) >= 1)
    headers, notification = receiver.received[0]
    assert notification["type"] == "Notification" and notification["subscriptionId"] == sub_id
    assert notification["id"].startswith("urn:ngsi-ld:Notification:") and notification["notifiedAt"].endswith("Z")
    assert [e["id"] for e in notification["data"]] == [body["id"]]
    assert notification["data"][0]["temperature"]["value"] == 21.5
    assert headers["content-type"] == "application/json" and LINK_REL in headers["link"]

    url = f"{BASE}/entities/{body['id']}/attrs"
    client.post(url, json={"humidity": {"type": "Property", "value": 1}, "@context": CORE}, headers=ld(admin_headers))
    client.patch(url, json={"temperature": {"type": "Property", "value": 30}, "@context": CORE},
                 headers=ld(admin_headers))
    receiver.wait_for(lambda got: len(got) >= 2)
    time.sleep(0.3)
    assert len(receiver.received) == 2  # the humidity change was not watched
    assert receiver.received[1][1]["data"][0]["temperature"]["value"] == 30
    deadline = time.monotonic() + 10
    while True:  # the figures are written once the endpoint has answered
        sub = client.get(f"{BASE}/subscriptions/{sub_id}", headers=ld(admin_headers)).json()
        if sub["notification"]["timesSent"] == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert sub["notification"]["timesSent"] == 2 and sub["notification"]["status"] == "ok"
    client.delete(f"{BASE}/subscriptions/{sub_id}", headers=admin_headers)


def test_q_format_attributes_and_ld_json(client: TestClient, admin_headers, receiver: Receiver) -> None:
    kind = new_type()
    body = subscription(kind, receiver.url, q="temperature>25")
    body["notification"] = {"format": "keyValues", "attributes": ["temperature"],
                            "endpoint": {"uri": receiver.url, "accept": "application/ld+json",
                                         "receiverInfo": [{"key": "X-Token", "value": "abc"}]}}
    sub_id = subscribe(client, admin_headers, body)
    cold, hot = station(kind), station(kind, temperature={"type": "Property", "value": 31})
    r = client.post(f"{BASE}/entityOperations/upsert", json=[cold, hot], headers=ld(admin_headers))
    assert r.status_code == 201, r.text
    receiver.wait_for(lambda got: len(got) >= 1)
    headers, notification = receiver.received[0]
    assert notification["data"] == [{"id": hot["id"], "type": kind, "temperature": 31}]
    assert notification["@context"] == CORE and headers["content-type"] == "application/ld+json"
    assert headers["x-token"] == "abc"
    client.delete(f"{BASE}/subscriptions/{sub_id}", headers=admin_headers)


def test_notifications_stay_inside_the_creators_scope(client: TestClient, admin_headers, make_user,
                                                      receiver: Receiver) -> None:
    kind = new_type()
    commune = make_user("integrator", "24781")
    sub_id = subscribe(client, commune, subscription(kind, receiver.url))
    elsewhere, here = station(kind, unit=OTHER_WARD), station(kind)
    client.post(f"{BASE}/entityOperations/create", json=[elsewhere, here], headers=ld(admin_headers))
    receiver.wait_for(lambda got: len(got) >= 1)
    assert [e["id"] for e in receiver.received[0][1]["data"]] == [here["id"]]
    client.delete(f"{BASE}/subscriptions/{sub_id}", headers=commune)


def test_a_rejected_write_notifies_nothing(client: TestClient, admin_headers, session_factory) -> None:
    kind = new_type()
    sub_id = subscribe(client, admin_headers, subscription(kind, "http://127.0.0.1:9/n"))
    good, bad = station(kind), station(kind, unit="99999")
    r = client.post(f"{BASE}/entityOperations/upsert", json=[good, bad], headers=ld(admin_headers))
    assert r.status_code == 400
    with session_factory() as session:
        assert session.scalars(select(NgsiNotification).where(NgsiNotification.subscription_id == sub_id)).all() == []
    client.delete(f"{BASE}/subscriptions/{sub_id}", headers=admin_headers)


def test_failed_deliveries_are_retried(client: TestClient, admin_headers, session_factory) -> None:
    failing = Receiver(status=500)
    try:
        kind = new_type()
        sub_id = subscribe(client, admin_headers, subscription(kind, failing.url))
        client.post(f"{BASE}/entities", json=station(kind), headers=ld(admin_headers))
        failing.wait_for(lambda got: len(got) >= 1)
        failing.status = 200
        deadline = time.monotonic() + 15
        while True:
            with session_factory() as session:
                row = session.scalar(select(NgsiNotification).where(NgsiNotification.subscription_id == sub_id))
            assert row is not None
            if row.status == "delivered" or time.monotonic() > deadline:
                break
            time.sleep(0.1)  # the notifier tries again after its backoff (2 s after a first failure)
        assert row.status == "delivered" and row.attempts == 2 and len(failing.received) == 2
        sub = client.get(f"{BASE}/subscriptions/{sub_id}", headers=js(admin_headers)).json()
        assert sub["notification"]["timesSent"] == 1 and sub["notification"]["timesFailed"] == 1
        client.delete(f"{BASE}/subscriptions/{sub_id}", headers=admin_headers)
    finally:
        failing.close()


def test_geo_subscriptions_notify_only_nearby_changes(client: TestClient, admin_headers, receiver: Receiver) -> None:
    kind = new_type()
    geo = {"georel": "near;maxDistance==2000", "geometry": "Point", "coordinates": [108.44, 11.94]}
    sub_id = subscribe(client, admin_headers, subscription(kind, receiver.url, geoQ=geo,
                                                           entities=[{"idPattern": f".*:{kind}:.*"}]))
    near, far = station(kind), station(kind, lon=108.94)
    client.post(f"{BASE}/entityOperations/create", json=[far, near], headers=ld(admin_headers))
    receiver.wait_for(lambda got: len(got) >= 1)
    assert [e["id"] for e in receiver.received[0][1]["data"]] == [near["id"]]
    client.delete(f"{BASE}/subscriptions/{sub_id}", headers=admin_headers)


def test_old_notifications_are_forgotten(client: TestClient, admin_headers, session_factory,
                                         receiver: Receiver) -> None:
    from datetime import timedelta

    from saola.interop.ngsi_ld.notify import purge_old

    kind = new_type()
    sub_id = subscribe(client, admin_headers, subscription(kind, receiver.url))
    client.post(f"{BASE}/entities", json=station(kind), headers=ld(admin_headers))
    receiver.wait_for(lambda got: len(got) >= 1)
    deadline = time.monotonic() + 10
    while True:  # the notifier records the delivery once the endpoint has answered
        with session_factory() as session:
            row = session.scalar(select(NgsiNotification).where(NgsiNotification.subscription_id == sub_id))
        if (row is not None and row.delivered_at is not None) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert row is not None and row.delivered_at is not None
    delivered = row.delivered_at
    assert purge_old(session_factory, now=delivered + timedelta(hours=1)) == 0
    assert purge_old(session_factory, now=delivered + timedelta(days=2)) >= 1
    with session_factory() as session:
        assert session.scalar(select(NgsiNotification).where(NgsiNotification.subscription_id == sub_id)) is None
    client.delete(f"{BASE}/subscriptions/{sub_id}", headers=admin_headers)


def test_the_notifier_stops_with_the_application_and_starts_again_with_it(app) -> None:
    # A notifier left running after shutdown kept polling a database that was going away (a traceback at exit).
    from saola.interop.ngsi_ld import notify

    engine = app.state.engine
    with TestClient(app):
        running = notify._notifiers[engine]
        assert running.is_alive()
    assert not running.is_alive() and engine not in notify._notifiers
    with TestClient(app):
        again = notify._notifiers[engine]
        assert again is not running and again.is_alive()
