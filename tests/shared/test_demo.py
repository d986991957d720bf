"""The demo seller's events: the same on every start, and readable in every total."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.demo import DAYS, DEMO_NAME, demo_events, load_demo, push_in_batches
from devstack.launcher import demo_or_none
from devstack.stack import AdminCredentials, load_or_create_fernet_key
from shared.events import validate_batch
from shared.time import local_date
from tests.unreachable import refusing_port


def test_a_later_start_pushes_the_days_it_shares_unchanged() -> None:
    today = date(2026, 11, 27)
    first = {e["event_id"]: e for e in demo_events(today)}
    later = {e["event_id"]: e for e in demo_events(today + timedelta(days=1))}
    shared = first.keys() & later.keys()
    assert len(shared) > DAYS * 10
    assert all(first[event_id] == later[event_id] for event_id in shared)
    # Only the new day's events are new.
    new = [later[event_id] for event_id in later.keys() - first.keys()]
    assert {e["payload"].get("purchased_at", e["occurred_at"])[:10] for e in new} == {
        today.isoformat()
    }


def test_every_local_date_of_an_order_has_an_mxn_rate_on_or_before_it() -> None:
    events = demo_events(date(2026, 11, 27))
    _, errors = validate_batch(events)
    assert errors == []
    rated = sorted(e["payload"]["date"] for e in events if e["type"] == "fx_rate")
    for event in events:
        if event["type"] != "order_line" or event["source"]["marketplace"] != "MX":
            continue
        purchased = datetime.fromisoformat(event["payload"]["purchased_at"])
        day = local_date(purchased, "MX").isoformat()
        assert rated[0] <= day, (event["event_id"], day)


def test_a_push_over_a_lowered_body_limit_goes_again_in_halves_and_waits_its_turn() -> None:
    """LODESTAR_MAX_BODY_BYTES lowered below a demo batch: the launcher died at every
    start on the 413. The gateway's answers here are its own: 413 over the limit."""
    limit = 40_000
    pushed: list[int] = []
    requests = 0

    def gateway(request: httpx.Request) -> httpx.Response:
        nonlocal requests
        requests += 1
        if len(request.content) > limit:
            return httpx.Response(413, json={"error": "payload_too_large"})
        if requests % 3 == 0:
            # Many small requests meet the rate limit too: the batch waits its turn.
            return httpx.Response(429, json={"error": "rate_limited"}, headers={"Retry-After": "0"})
        events = json.loads(request.content)["events"]
        pushed.extend(event["n"] for event in events)
        return httpx.Response(202, json={"accepted": len(events), "duplicates": 0})

    events = [{"n": n, "padding": "x" * 100} for n in range(1_200)]
    with httpx.Client(base_url="http://gateway", transport=httpx.MockTransport(gateway)) as client:
        push_in_batches(client, "token", events)
    assert pushed == list(range(1_200))
    # One event over the limit cannot be halved: the 413 is raised, not looped on.
    with (
        httpx.Client(base_url="http://gateway", transport=httpx.MockTransport(gateway)) as client,
        pytest.raises(httpx.HTTPStatusError),
    ):
        push_in_batches(client, "token", [{"n": 0, "padding": "x" * limit}])


def test_secrets_are_written_readable_by_their_owner_alone_from_the_first_byte(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Made with the usual umask and tightened after, a key was readable by all for a
    moment; and a file already there kept whatever mode it had."""
    modes: list[int] = []
    write_text = Path.write_text

    def spying_write(self: Path, text: str, *args: Any, **kwargs: Any) -> int:
        modes.append(stat.S_IMODE(self.stat().st_mode) if self.exists() else 0o644)
        return write_text(self, text, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", spying_write)
    key = load_or_create_fernet_key(tmp_path / "home" / "credentials.key")
    loose = tmp_path / "dev-credentials.json"
    loose.touch(mode=0o644)
    loose.chmod(0o644)
    AdminCredentials("admin", "secret").save(loose)
    assert key and modes == [0o600, 0o600]
    for path in (tmp_path / "home" / "credentials.key", loose):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_damaged_key_file_is_named_not_the_variable_it_stands_in_for(tmp_path: Path) -> None:
    path = tmp_path / "signing-keys.key"
    path.write_text("corrupted-key\n")
    with pytest.raises(SystemExit) as refused:
        load_or_create_fernet_key(path)
    said = str(refused.value)
    assert said.startswith(f"{path}: the 1st key must be a Fernet key")
    assert "delete it" in said and "LODESTAR_" not in said


def fake_gateway(
    listed: list[dict[str, str]], made: list[str], gone: str = ""
) -> httpx.MockTransport:
    """The gateway as the demo loader meets it: ``listed`` tenants, a new one
    ``tn_new`` (noted in ``made``), each tenant's new client ``cl_<tenant>``; the client
    ``gone`` (``id:secret``) gets no token."""

    def answer(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/oauth/token":
            refused = "Basic " + base64.b64encode(gone.encode()).decode()
            if gone and request.headers["authorization"] == refused:
                return httpx.Response(401, json={"error": "invalid_client"})
            return httpx.Response(200, json={"access_token": "t"})
        if path == "/v1/tenants" and request.method == "GET":
            return httpx.Response(200, json={"tenants": listed})
        if path == "/v1/tenants":
            made.append("tenant")
            return httpx.Response(201, json={"id": "tn_new"})
        if path.startswith("/v1/tenants/") and path.endswith("/clients"):
            client_id = "cl_" + path.split("/")[3].removeprefix("tn_")
            return httpx.Response(201, json={"client_id": client_id, "client_secret": "n"})
        assert path == "/v1/events"
        return httpx.Response(202, json={"accepted": 1, "duplicates": 0})

    return httpx.MockTransport(answer)


def test_a_demo_seller_erased_since_is_made_again(tmp_path: Path) -> None:
    """Its saved client no longer gets a token (the tenant erased, or the client
    revoked): every make run stopped on the 401, until one found the file to delete."""
    (tmp_path / "demo-credentials.json").write_text(
        json.dumps({"tenant_id": "tn_erased", "client_id": "cl_gone", "client_secret": "s"})
    )
    made: list[str] = []
    gateway = fake_gateway([], made, gone="cl_gone:s")
    demo = load_demo("http://gateway", AdminCredentials("admin", "a"), tmp_path, gateway)
    assert (demo.tenant_id, demo.client_id, made) == ("tn_new", "cl_new", ["tenant"])
    saved = json.loads((tmp_path / "demo-credentials.json").read_text())
    assert saved == {"tenant_id": "tn_new", "client_id": "cl_new", "client_secret": "n"}


def test_a_demo_seller_left_without_credentials_is_not_made_twice(tmp_path: Path) -> None:
    """A start stopped between making the tenant and its client left a demo seller the
    next start could not find, and it made a second one."""
    made: list[str] = []
    listed = [{"id": "tn_other", "name": "Other"}, {"id": "tn_left", "name": DEMO_NAME}]
    gateway = fake_gateway(listed, made)
    demo = load_demo("http://gateway", AdminCredentials("admin", "a"), tmp_path, gateway)
    assert (demo.tenant_id, demo.client_id, made) == ("tn_left", "cl_left", [])


def test_a_demo_that_cannot_be_loaded_is_said_and_the_stack_runs_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def gateway(request: httpx.Request) -> httpx.Response:
        return httpx.Response(413, json={"error": "payload_too_large"})

    demo = demo_or_none(
        "http://gateway", AdminCredentials("admin", "a"), tmp_path, httpx.MockTransport(gateway)
    )
    assert demo is None
    [said] = capsys.readouterr().out.splitlines()
    assert said.startswith("the demo seller could not be loaded (HTTPStatusError: ")


def test_make_demo_pushes_to_the_gateway_port_make_run_was_given(tmp_path: Path) -> None:
    """`make demo` went to port 8000 whatever LODESTAR_GATEWAY_PORT said, and told a
    stack not running with a traceback."""
    with refusing_port() as port:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LODESTAR_")}
        env |= {"LODESTAR_HOME": str(tmp_path), "LODESTAR_GATEWAY_PORT": str(port)}
        ran = subprocess.run(
            [sys.executable, "-m", "devstack.demo"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert ran.returncode == 1
    said = ran.stderr.strip()
    assert said.startswith(f"no Lodestar answers at http://127.0.0.1:{port} ("), said
    assert said.endswith("): start it with make run first"), said
    assert "Traceback" not in said
