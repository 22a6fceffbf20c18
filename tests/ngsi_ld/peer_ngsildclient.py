"""Drives Saola's NGSI-LD door with the `ngsildclient` package (0.5.2), run in that package's own virtual environment.

    python peer_ngsildclient.py <port> <header name> <header value> <entity type> <receiver url>

It prints one JSON object with what each step saw; tests/ngsi_ld/test_peer.py asserts on it. This file runs
under the peer's interpreter only: it imports nothing from Saola.
"""

from __future__ import annotations

import json
import sys
import time

from ngsildclient import Client, Entity, SubscriptionBuilder
from requests.auth import AuthBase


class HeaderAuth(AuthBase):
    """Adds Saola's credentials (a bearer token or an X-API-Key) to every request the client sends."""

    def __init__(self, name: str, value: str) -> None:
        self.name, self.value = name, value

    def __call__(self, request):  # type: ignore[no-untyped-def]
        request.headers[self.name] = self.value
        return request


def station(kind: str, local: str, temperature: float) -> Entity:
    entity = Entity(kind, local)
    entity.prop("temperature", temperature, unitcode="CEL", observedat="2026-11-25T01:00:00Z")
    entity.prop("name", f"Trạm {local}")
    entity.rel("refDevice", "Device:dl-01")
    entity.loc(11.94, 108.44)  # latitude, longitude: ngsildclient writes GeoJSON [longitude, latitude]
    return entity


def main() -> None:
    port, header, value, kind, receiver = sys.argv[1:6]
    out: dict[str, object] = {}
    client = Client(hostname="127.0.0.1", port=int(port), custom_auth=HeaderAuth(header, value), verbose=False)
    out["connected"] = client.is_connected()

    first = station(kind, "peer-0", 21.5)
    out["created"] = client.create(first)
    got = client.get(first.id)
    out["got"] = got.to_dict()
    out["exists"] = client.exists(first.id)

    batch = [station(kind, f"peer-{i}", 20.0 + i) for i in range(1, 11)]
    created = client.create(batch)
    out["batch_created"] = [created.n_ok, created.n_err]
    again = client.create([batch[0], station(kind, "peer-11", 31.0)])
    out["batch_again"] = [again.n_ok, again.n_err]
    upserted = client.upsert(batch[:5])
    out["batch_upserted"] = [upserted.n_ok, upserted.n_err]
    out["count"] = client.count(type=kind)
    out["hot"] = sorted(e.id for e in client.query(type=kind, q="temperature>28"))
    out["all"] = len(client.query(type=kind))
    out["types"] = kind in client.types.list()

    subscription = SubscriptionBuilder(receiver).select_type(kind).watch(["temperature"]).build()
    sub_id = client.subscriptions.create(subscription)
    out["subscription"] = sub_id
    out["subscription_exists"] = client.subscriptions.exists(sub_id)
    out["subscriptions"] = [s["id"] for s in client.subscriptions.list()]

    changed = station(kind, "peer-0", 35.0)
    out["upsert_one"] = client.upsert(changed)
    out["after_upsert"] = client.get(first.id).to_dict()["temperature"]["value"]
    out["temporal"] = client.temporal.get(first.id, attrs=["temperature"])

    time.sleep(0.2)
    out["deleted_one"] = client.delete(first)
    out["exists_after_delete"] = client.exists(first.id)
    client.drop(kind)
    out["count_after_drop"] = client.count(type=kind)
    client.subscriptions._delete(sub_id)
    out["subscription_after_delete"] = client.subscriptions.exists(sub_id)
    client.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
