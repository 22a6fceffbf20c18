"""The `saola` command line: units, users, sources, and the refusal to serve with a public secret."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from saola.cli import app
from saola.config import DEMO_SECRET_KEY
from tests.conftest import unique

runner = CliRunner()


@pytest.fixture
def env(settings) -> dict[str, str]:
    """Environment pointing the CLI at the test database."""
    return {"SAOLA_DATABASE_URL": settings.url, "SAOLA_DATA_DIR": str(settings.data_dir),
            "SAOLA_SECRET_KEY": settings.secret_key}


def test_units_load_is_idempotent(env) -> None:
    result = runner.invoke(app, ["units", "load"], env=env)
    assert result.exit_code == 0, result.output
    assert "34 provinces, 3321 communes" in result.output and "0 new" in result.output


def test_db_upgrade_reports_revision(env) -> None:
    result = runner.invoke(app, ["db", "upgrade"], env=env)
    assert result.exit_code == 0, result.output
    assert "database at revision" in result.output


def test_users_create_then_login(env, client) -> None:
    name = unique("cli")
    result = runner.invoke(app, ["users", "create", "--username", name, "--password", "correct-horse",
                                 "--role", "leader", "--scope", "68"], env=env)
    assert result.exit_code == 0, result.output
    r = client.post("/api/auth/token", data={"username": name, "password": "correct-horse"})
    assert r.status_code == 200
    me = client.get("/api/auth/me", headers={"Authorization": f"Bearer {r.json()['access_token']}"}).json()
    assert me["role"] == "leader" and me["scope_code"] == "68"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--role", "pharaoh", "--scope", "68"], "role"),
        (["--role", "leader", "--scope", "99999"], "unknown unit"),
    ],
)
def test_users_create_rejects_bad_input(env, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["users", "create", "--username", unique("cli"), "--password", "correct-horse",
                                 *args], env=env)
    assert result.exit_code == 2
    assert message in result.output


def test_sources_create_prints_a_working_key_once(env, client) -> None:
    result = runner.invoke(app, ["sources", "create", unique("cli-src"), "--scope", "68",
                                 "--allow", "observations:env.*"], env=env)
    assert result.exit_code == 0, result.output
    key = re.search(r"(sk_[0-9a-f]{12}_\S+)", result.output).group(1)
    me = client.get("/api/auth/me", headers={"X-API-Key": key})
    assert me.status_code == 200 and me.json()["kind"] == "source" and me.json()["scope_code"] == "68"


def test_serve_refuses_the_demo_secret(env) -> None:
    result = runner.invoke(app, ["serve", "--port", "1"], env={**env, "SAOLA_SECRET_KEY": DEMO_SECRET_KEY})
    assert result.exit_code == 2
    assert "demo key" in result.output


def test_serve_with_several_workers_needs_a_shared_bus(env) -> None:
    result = runner.invoke(app, ["serve", "--port", "1", "--workers", "2"], env={**env, "SAOLA_BUS_URL": ""})
    assert result.exit_code == 2
    assert "SAOLA_BUS_URL" in result.output
    result = runner.invoke(app, ["serve", "--port", "1", "--workers", "2", "--mqtt", "mqtt://127.0.0.1:1883"],
                           env={**env, "SAOLA_BUS_URL": "redis://127.0.0.1:6379/13"})
    assert result.exit_code == 2
    assert "MQTT door runs in one process" in result.output


def test_serve_with_two_workers_answers(env) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "saola"), "serve", "--port", str(port), "--workers", "2"],
        env={**os.environ, **env, "SAOLA_BUS_URL": "redis://127.0.0.1:6379/13", "SAOLA_RUN_JOBS": "false",
             "SAOLA_MQTT_URL": ""},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline, answered = time.monotonic() + 60, None
        while time.monotonic() < deadline and process.poll() is None and answered is None:
            try:
                answered = httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2)
            except httpx.HTTPError:
                time.sleep(0.3)
        assert answered is not None and answered.status_code == 200, process.poll()
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0].decode(errors="replace")
    assert "Traceback" not in output, output[-2000:]
