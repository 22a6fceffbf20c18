"""The NGSI-LD door against a peer client: `ngsildclient` 0.5.2 talking to a real uvicorn server over HTTP.

ngsildclient pins httpx<0.24 and rich<13, which clash with Saola's own, so it lives in a virtual environment
of its own and runs in a subprocess (peer_ngsildclient.py). The environment is found at SAOLA_NGSILD_PYTHON (an
interpreter that has ngsildclient), else at SAOLA_NGSILD_VENV (default ~/.cache/saola/ngsildclient-0.5.2), and
is created there when missing:

    python3 -m venv ~/.cache/saola/ngsildclient-0.5.2
    ~/.cache/saola/ngsildclient-0.5.2/bin/pip install ngsildclient==0.5.2

The test is skipped (saying why) only when that environment cannot be made.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import uvicorn

from saola.core.auth.context import system_actor
from saola.core.auth.service import create_user, issue_token
from saola.db.engine import transaction
from tests.conftest import unique
from tests.ngsi_ld.conftest import Receiver, new_type

PEER_PACKAGE = "ngsildclient==0.5.2"
SCRIPT = Path(__file__).with_name("peer_ngsildclient.py")
DEFAULT_VENV = Path.home() / ".cache" / "saola" / "ngsildclient-0.5.2"


def _has_client(python: Path) -> bool:
    if not python.exists():
        return False
    probe = subprocess.run([str(python), "-c", "import ngsildclient"], capture_output=True, timeout=120)
    return probe.returncode == 0


@pytest.fixture(scope="session")
def ngsild_python() -> Path:
    """An interpreter with ngsildclient 0.5.2, in its own virtual environment (created when missing)."""
    given = os.environ.get("SAOLA_NGSILD_PYTHON")
    if given:
        if not _has_client(Path(given)):
            pytest.fail(f"SAOLA_NGSILD_PYTHON={given} cannot import ngsildclient")
        return Path(given)
    venv = Path(os.environ.get("SAOLA_NGSILD_VENV", DEFAULT_VENV))
    python = venv / "bin" / "python"
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f"{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one creator at a time (parallel test runs share the folder)
        if _has_client(python):
            return python
        shutil.rmtree(venv, ignore_errors=True)
        try:
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=300)
            subprocess.run([str(venv / "bin" / "pip"), "install", "-q", PEER_PACKAGE], check=True,
                           capture_output=True, timeout=600)
        except (subprocess.SubprocessError, OSError) as exc:
            shutil.rmtree(venv, ignore_errors=True)
            detail = (getattr(exc, "stderr", None) or b"").decode(errors="replace")[-500:]
            pytest.skip(f"cannot create a virtual environment with {PEER_PACKAGE} at {venv}: {exc} {detail}")
    return python


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(app) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """The test application served by uvicorn on a free local port, in a background thread."""
    port = _free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not running.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    yield str(port)
    running.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def token(settings, session_factory) -> str:  # type: ignore[no-untyped-def]
    """A bearer token of an admin of the whole country."""
    with transaction(session_factory) as session:
        user = create_user(session, actor=system_actor("test"), username=unique("peer"), password="p-" + unique(),
                           role="admin", scope="VN")
        return issue_token(settings, user)[0]


def test_ngsildclient_against_a_real_server(ngsild_python: Path, server: str, token: str) -> None:
    kind = new_type("Peer")
    receiver = Receiver()
    try:
        done = subprocess.run([str(ngsild_python), str(SCRIPT), server, "Authorization", f"Bearer {token}", kind,
                               receiver.url], capture_output=True, timeout=180)
        assert done.returncode == 0, done.stderr.decode()[-3000:]
        out: dict[str, Any] = orjson.loads(done.stdout.splitlines()[-1])
        receiver.wait_for(lambda got: len(got) >= 1)
    finally:
        receiver.close()
    entity_id = f"urn:ngsi-ld:{kind}:peer-0"
    assert out["connected"] is True and out["created"] is True and out["exists"] is True
    got = out["got"]
    assert got["id"] == entity_id and got["type"] == kind
    assert got["temperature"] == {"type": "Property", "value": 21.5, "unitCode": "CEL",
                                  "observedAt": "2026-11-25T01:00:00Z"}
    assert got["location"] == {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [108.44, 11.94]}}
    assert got["refDevice"] == {"type": "Relationship", "object": "urn:ngsi-ld:Device:dl-01"}
    assert out["batch_created"] == [10, 0] and out["batch_again"] == [1, 1] and out["batch_upserted"] == [5, 0]
    assert out["count"] == 12 and out["all"] == 12 and out["types"] is True
    assert out["hot"] == [f"urn:ngsi-ld:{kind}:peer-10", f"urn:ngsi-ld:{kind}:peer-11",
                          f"urn:ngsi-ld:{kind}:peer-9"]
    assert out["subscription"].startswith("urn:ngsi-ld:Subscription:") and out["subscription_exists"] is True
    assert out["subscription"] in out["subscriptions"]
    assert out["upsert_one"] is True and out["after_upsert"] == 35.0
    assert out["temporal"]["temperature"]["values"] == [[35.0, "2026-11-25T01:00:00Z"]]
    assert out["deleted_one"] is True and out["exists_after_delete"] is False
    assert out["count_after_drop"] == 0 and out["subscription_after_delete"] is False
    _, notification = receiver.received[0]
    assert notification["type"] == "Notification" and notification["subscriptionId"] == out["subscription"]
    assert notification["data"][0]["id"] == entity_id and notification["data"][0]["temperature"]["value"] == 35.0
