"""`make run` as a newcomer runs it: start, use, stop with no stray process or port."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pty
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from devstack.embedded import EmbeddedError, free_ports, port_is_free
from devstack.launcher import STOP_SIGNALS, Launcher, Stopped, _ephemeral_hint, main, stop_once
from tests.conftest import FreshDatabase
from tests.unreachable import refusing_port

SERVICES = ("gateway", "ingest", "metrics", "targets")


def _launcher_env(home: Path, ports: dict[str, int], broker_port: int) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS") and not k.startswith("LODESTAR_")
    }
    env["LODESTAR_HOME"] = str(home)
    env["LODESTAR_BROKER_PORT"] = str(broker_port)
    for service, port in ports.items():
        env[f"LODESTAR_{service.upper()}_PORT"] = str(port)
    return env


def _own_stack(tmp_path: Path) -> tuple[Path, dict[str, int], int, dict[str, str]]:
    """A home, free ports and the environment of a launcher of the test's own."""
    home = tmp_path / "home"
    ports, broker_port = _free_ports()
    return home, ports, broker_port, _launcher_env(home, ports, broker_port)


def _free_ports() -> tuple[dict[str, int], int]:
    """A port for each service and one for the broker, all different."""
    *chosen, broker_port = free_ports(len(SERVICES) + 1)
    return dict(zip(SERVICES, chosen, strict=True)), broker_port


def _start(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "devstack"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_running(process: subprocess.Popen[str], timeout: float = 120) -> str:
    assert process.stdout is not None
    output = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        output.append(line)
        if line.startswith("Press Ctrl-C"):
            return "".join(output)
    process.kill()
    raise AssertionError("launcher did not come up:\n" + "".join(output))


def _said_once_stopped(process: subprocess.Popen[str]) -> str:
    """All the launcher said, once it stopped (killed if a failed check left it running)."""
    if process.poll() is None:
        process.kill()
    assert process.stdout is not None
    return process.stdout.read()


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _postgres_processes(home: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = " ".join(proc.info.get("cmdline") or [])
        if proc.info.get("name") == "postgres" and str(home) in cmdline:
            found.append(proc)
    return found


@pytest.mark.slow
def test_make_run_starts_everything_and_sigterm_leaves_nothing(tmp_path: Path) -> None:
    home, ports, broker_port, env = _own_stack(tmp_path)

    process = _start(env)
    output = _wait_running(process)
    gateway = f"http://127.0.0.1:{ports['gateway']}"
    assert gateway in output and f"{gateway}/graphql" in output
    credentials = json.loads((home / "dev-credentials.json").read_text())
    assert credentials["client_secret"] in output
    children = _descendants(process.pid)
    for service, port in ports.items():
        assert httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200, service
    token = httpx.post(
        f"{gateway}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(credentials["client_id"], credentials["client_secret"]),
    )
    assert token.status_code == 200

    # A second launcher on the same home is refused, and leaves the first one's
    # PostgreSQL and broker alone (it once took them for leftovers and stopped them).
    running = {p.pid for p in _descendants(process.pid)}
    second = subprocess.run(
        [sys.executable, "-m", "devstack"], env=env, capture_output=True, text=True, timeout=60
    )
    assert second.returncode == 2, second.stdout + second.stderr
    assert second.stderr.strip() == (
        f"Lodestar is already running from {home} (launcher pid {process.pid}); stop it "
        "first, or set LODESTAR_HOME (and the ports) to run another one beside it"
    )
    # It stopped nothing, and says nothing that reads as if it had.
    assert "stop" not in second.stdout, second.stdout
    time.sleep(1.5)  # the first launcher's supervisor would have seen a broker die
    assert {p.pid for p in _descendants(process.pid)} == running
    assert httpx.get(f"http://127.0.0.1:{ports['ingest']}/readyz").status_code == 200

    process.send_signal(signal.SIGTERM)
    assert process.wait(60) == 0
    psutil.wait_procs(children, timeout=10)
    assert [p.pid for p in children if p.is_running() and p.status() != "zombie"] == []
    assert _postgres_processes(home) == []
    for port in [*ports.values(), broker_port]:
        assert port_is_free("127.0.0.1", port), port

    # A second run keeps the data: the demo tenant is the same one.
    demo = json.loads((home / "demo-credentials.json").read_text())
    process = _start(env)
    try:
        output = _wait_running(process)
        assert demo["tenant_id"] in output
        token = httpx.post(
            f"{gateway}/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(demo["client_id"], demo["client_secret"]),
        )
        assert token.status_code == 200
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(60) == 0
    assert _postgres_processes(home) == []

    # A closed terminal (SIGHUP, its output gone) stops everything as Ctrl-C does,
    # though it sends SIGHUP twice: the kernel's hangup, then the shell's to its jobs.
    process = _start(env)
    try:
        _wait_running(process)
        assert process.stdout is not None
        process.stdout.close()
    finally:
        process.send_signal(signal.SIGHUP)
        process.send_signal(signal.SIGHUP)
        assert process.wait(60) == 0
    assert _postgres_processes(home) == []
    for port in [*ports.values(), broker_port]:
        assert port_is_free("127.0.0.1", port), port

    # A terminal whose command is `make run` (xterm -e, ssh -t host make run) is
    # closed: its SIGHUP goes to make alone, which waits for the launcher without
    # passing it on. Here no signal at all: the launcher sees its terminal hung up.
    leader, terminal = pty.openpty()
    in_terminal = subprocess.Popen(
        [sys.executable, "-m", "devstack"],
        env=env,
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        start_new_session=True,
    )
    os.close(terminal)
    try:
        _read_until(leader, b"Press Ctrl-C")
    finally:
        os.close(leader)
    assert in_terminal.wait(60) == 0
    assert _postgres_processes(home) == []
    for port in [*ports.values(), broker_port]:
        assert port_is_free("127.0.0.1", port), port


def _read_until(terminal: int, wanted: bytes, timeout: float = 120) -> bytes:
    """What a terminal shows until ``wanted``, read from its side of the pty."""
    shown = b""
    deadline = time.monotonic() + timeout
    while wanted not in shown:
        remaining = deadline - time.monotonic()
        readable, _, _ = select.select([terminal], [], [], max(remaining, 0))
        assert readable, f"not shown in {timeout:.0f} s:\n{shown.decode(errors='replace')}"
        shown += os.read(terminal, 65536)
    return shown


def test_the_first_stop_signal_stops_and_the_others_are_ignored() -> None:
    """A closed terminal sends SIGHUP twice; the second, arriving while the launcher
    stops, once cut the stopping short and left PostgreSQL and the broker running."""
    before = {stop: signal.getsignal(stop) for stop in STOP_SIGNALS}
    try:
        for stop in STOP_SIGNALS:
            signal.signal(stop, stop_once)
        with pytest.raises(Stopped, match="SIGHUP"):
            stop_once(signal.SIGHUP, None)
        assert {signal.getsignal(stop) for stop in STOP_SIGNALS} == {signal.SIG_IGN}
        os.kill(os.getpid(), signal.SIGHUP)  # ignored: nothing is raised
    finally:
        for stop, handler in before.items():
            signal.signal(stop, handler)


def test_a_database_that_cannot_start_is_told_without_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A full disk at the first start was 70 lines of traceback, its cause among them."""

    def disk_full(self: Launcher) -> int:
        raise EmbeddedError("PostgreSQL did not start on /x: FATAL: No space left on device")

    monkeypatch.setattr(Launcher, "run", disk_full)
    monkeypatch.setenv("LODESTAR_HOME", str(tmp_path / "home"))
    before = {stop: signal.getsignal(stop) for stop in STOP_SIGNALS}
    try:
        assert main() == 1
    finally:
        for stop, handler in before.items():
            signal.signal(stop, handler)
    assert capsys.readouterr().err == (
        "PostgreSQL did not start on /x: FATAL: No space left on device\n"
    )


def test_port_already_taken_is_one_line_naming_the_variable(tmp_path: Path) -> None:
    ports, broker_port = _free_ports()
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", ports["ingest"]))
        blocker.listen()
        result = subprocess.run(
            [sys.executable, "-m", "devstack"],
            env=_launcher_env(tmp_path / "home", ports, broker_port),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [
        f"port {ports['ingest']} is already in use; set LODESTAR_INGEST_PORT to move it"
    ], result.stderr
    assert "stop" not in result.stdout, result.stdout


def test_a_port_out_of_range_is_one_line_naming_the_variable(tmp_path: Path) -> None:
    env = _launcher_env(tmp_path / "home", *_free_ports())
    env["LODESTAR_INGEST_PORT"] = "99999"
    result = subprocess.run(
        [sys.executable, "-m", "devstack"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "LODESTAR_INGEST_PORT must be a port number (1 to 65535), not '99999'"
    )
    assert "stop" not in result.stdout, result.stdout


def test_a_database_url_that_is_none_is_one_line_without_its_password(tmp_path: Path) -> None:
    env = _launcher_env(tmp_path / "home", *_free_ports())
    env["DATABASE_URL"] = "postgresql://bob:S3cretPW@127.0.0.1:notaport/lodestar"
    result = subprocess.run(
        [sys.executable, "-m", "devstack"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert result.stderr.strip() == "DATABASE_URL: a port is no number from 1 to 65535"
    assert "S3cretPW" not in result.stdout + result.stderr


def test_a_database_nobody_answers_at_is_one_line_without_its_password(tmp_path: Path) -> None:
    env = _launcher_env(tmp_path / "home", *_free_ports())
    with refusing_port() as down:
        env["DATABASE_URL"] = f"postgresql://bob:S3cretPW@127.0.0.1:{down}/lodestar"
        result = subprocess.run(
            [sys.executable, "-m", "devstack"], env=env, capture_output=True, text=True, timeout=120
        )
    assert result.returncode == 1
    [said] = result.stderr.strip().splitlines()
    assert said.startswith("DATABASE_URL: PostgreSQL did not take the migrations ("), said
    assert "S3cretPW" not in result.stdout + result.stderr


async def test_a_broker_nobody_answers_at_is_one_line(
    tmp_path: Path, fresh_database: FreshDatabase
) -> None:
    env = _launcher_env(tmp_path / "home", *_free_ports())
    env["DATABASE_URL"] = await fresh_database()
    with refusing_port() as down:
        env["KAFKA_BOOTSTRAP_SERVERS"] = f"127.0.0.1:{down}"
        result = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "devstack"],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    [said] = lines
    assert said.startswith("KAFKA_BOOTSTRAP_SERVERS: no broker took the topics ("), said


def test_a_home_the_broker_cannot_be_unpacked_in_is_one_line(tmp_path: Path) -> None:
    env = _launcher_env(tmp_path / "home", *_free_ports())
    env["HOME"] = "/proc/no-home"
    env.pop("CALF_TANSU_BIN", None)
    result = subprocess.run(
        [sys.executable, "-m", "devstack"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    [said] = result.stderr.strip().splitlines()
    assert said.startswith("the embedded broker (Tansu) cannot be unpacked ("), said
    assert said.endswith("or KAFKA_BOOTSTRAP_SERVERS to a broker of your own"), said


@pytest.mark.parametrize("home_is", ["a file", "unwritable"])
def test_a_home_that_cannot_be_used_is_one_line(tmp_path: Path, home_is: str) -> None:
    home = tmp_path / "home"
    if home_is == "a file":
        home.write_text("x")
        env = _launcher_env(home, *_free_ports())
    else:
        env = _launcher_env(Path("/proc/lodestar-home"), *_free_ports())
    result = subprocess.run(
        [sys.executable, "-m", "devstack"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    [said] = result.stderr.strip().splitlines()
    assert said.startswith("LODESTAR_HOME ") and said.endswith(
        "; set LODESTAR_HOME to a directory you may write"
    ), said


def test_a_service_refusing_its_settings_says_why_and_leaves_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = _launcher_env(home, *_free_ports())
    env["LODESTAR_GATEWAY_CORS_ORIGINS"] = "https://app.example.com/"
    result = subprocess.run(
        [sys.executable, "-m", "devstack"], env=env, capture_output=True, text=True, timeout=180
    )
    assert result.returncode != 0
    said = result.stdout + result.stderr
    assert "gateway exited with" in said, said
    # The setting and the value, from the end of the gateway's log.
    assert "LODESTAR_GATEWAY_CORS_ORIGINS" in said and "'https://app.example.com/'" in said, said
    assert _postgres_processes(home) == []


def _child(launcher: subprocess.Popen[str], *words: str, timeout: float = 30) -> psutil.Process:
    """The launcher's child process whose command line holds ``words``, once it runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in _descendants(launcher.pid):
            try:
                cmdline = " ".join(child.cmdline())
            except psutil.Error:
                continue
            if all(word in cmdline for word in words) and child.status() != "zombie":
                return child
        time.sleep(0.2)
    raise AssertionError(f"no child running {words}")


def _ready(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # Not listening yet while it starts again.
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.3)
    raise AssertionError(f"{url} never became ready")


@pytest.mark.slow
def test_what_stops_by_itself_starts_again_until_it_keeps_stopping(tmp_path: Path) -> None:
    home, ports, broker_port, env = _own_stack(tmp_path)
    process = _start(env)
    try:
        _wait_running(process)
        # The broker, killed, comes back (empty) and ingest finds it again.
        _child(process, "broker", f":{broker_port}").kill()
        time.sleep(1)
        _ready(f"http://127.0.0.1:{ports['ingest']}/readyz")
        assert not port_is_free("127.0.0.1", broker_port)
        # A service killed comes back; one that keeps stopping stops everything.
        killed = set()
        for kill in range(4):
            metrics = _child(process, "services.metrics.app")
            assert metrics.pid not in killed
            killed.add(metrics.pid)
            metrics.kill()
            if kill == 0:
                time.sleep(1)
                _ready(f"http://127.0.0.1:{ports['metrics']}/readyz")
            elif process.poll() is None:
                time.sleep(1)
        assert process.wait(60) == 1
    finally:
        said = _said_once_stopped(process)
    assert "the broker (Tansu) stopped unexpectedly" in said, said
    assert said.count("metrics stopped unexpectedly (-9); starting it again") == 3, said
    # The reason comes before the stack stops, not after.
    reason = said.index("metrics stopped unexpectedly (-9), 4 times in a minute")
    assert reason < said.index("stopped.", reason), said
    assert _postgres_processes(home) == []
    for port in [*ports.values(), broker_port]:
        assert port_is_free("127.0.0.1", port), port


def _orders_on(gateway: str, token: str, day: str) -> int | None:
    """The demo tenant's orders on a day, or None while the stack cannot answer."""
    try:
        answer = httpx.get(
            f"{gateway}/v1/kpis",
            params={"metrics": "orders", "from": day, "to": day, "grain": "TOTAL"},
            headers={"Authorization": f"Bearer {token}"},
            timeout=5,
        )
    except httpx.HTTPError:
        return None
    if answer.status_code != 200:
        return None
    values = [v["value"] for row in answer.json()["rows"] for v in row["values"]]
    return sum(int(v) for v in values if v is not None)


def order_line_after_the_restart(day: str) -> dict[str, object]:
    return {
        "event_id": "after-the-restart",
        "type": "order_line",
        "version": 1,
        "source": {"platform": "amazon", "store_id": "acme-us", "marketplace": "US"},
        "occurred_at": f"{day}T18:00:00Z",
        "payload": {
            "order_id": "after-the-restart",
            "line_id": "1",
            "sku": "LAMP-01",
            "quantity": 1,
            "unit_price": {"amount": "24.99", "currency": "USD"},
            "status": "shipped",
            "purchased_at": f"{day}T18:00:00Z",
        },
    }


@pytest.mark.slow
def test_postgresql_killed_starts_again_on_its_data_and_every_service_recovers(
    tmp_path: Path,
) -> None:
    home, ports, broker_port, env = _own_stack(tmp_path)
    gateway = f"http://127.0.0.1:{ports['gateway']}"
    process = _start(env)
    try:
        _wait_running(process)
        demo = json.loads((home / "demo-credentials.json").read_text())
        token = httpx.post(
            f"{gateway}/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(demo["client_id"], demo["client_secret"]),
        ).json()["access_token"]
        day = "2020-01-15"  # before any demo data
        assert _orders_on(gateway, token, day) == 0
        (postmaster,) = [p for p in _postgres_processes(home) if "-D" in p.cmdline()]
        postmaster.kill()
        _ready(f"{gateway}/readyz")
        for port in ports.values():
            _ready(f"http://127.0.0.1:{port}/readyz")
        (again,) = [p for p in _postgres_processes(home) if "-D" in p.cmdline()]
        assert again.pid != postmaster.pid
        # What was committed is there, and a push after the restart is counted.
        pushed = httpx.post(
            f"{gateway}/v1/events",
            json={"events": [order_line_after_the_restart(day)]},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert pushed.status_code == 202, pushed.text
        deadline = time.monotonic() + 30
        while _orders_on(gateway, token, day) != 1 and time.monotonic() < deadline:
            time.sleep(0.3)
        assert _orders_on(gateway, token, day) == 1
        assert process.poll() is None
    finally:
        process.send_signal(signal.SIGINT)
        code = process.wait(60)
        said = _said_once_stopped(process)
    assert code == 0, said
    assert "PostgreSQL stopped unexpectedly; starting it again" in said, said
    assert _postgres_processes(home) == []
    for port in [*ports.values(), broker_port]:
        assert port_is_free("127.0.0.1", port), port


def test_a_port_taken_at_bind_in_the_ephemeral_range_is_told_why(tmp_path: Path) -> None:
    """A service's port, free at the check, was taken before it bound: the system lent
    it to an outgoing connection, which holds it as long as it lasts."""
    refused = (
        "ERROR:    [Errno 98] error while attempting to bind on address: address already in use"
    )
    low, high = (int(n) for n in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    assert _ephemeral_hint(low, refused) == (
        f"\nport {low} lies in the system's range for outgoing connections ({low}-{high}), "
        f"which may take it at any moment: choose ports below {low}"
    )
    assert _ephemeral_hint(low - 1, refused) == ""
    assert _ephemeral_hint(low, "a setting was refused") == ""


def test_a_restart_that_fails_is_tried_again_until_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """PostgreSQL killed again while it recovered stopped the whole stack at once."""
    monkeypatch.setattr(time, "sleep", lambda _seconds: None)
    launcher = Launcher(tmp_path)
    attempts: list[int] = []

    def flaky() -> None:
        attempts.append(1)
        if len(attempts) == 1:
            raise EmbeddedError("the database system is starting up")

    launcher._start_again("postgres", "PostgreSQL stopped unexpectedly", tmp_path / "log", flaky)
    assert len(attempts) == 2
    said = capsys.readouterr()
    assert "postgres could not be started again (EmbeddedError: the database system" in (
        said.out + said.err
    )

    def broken() -> None:
        raise EmbeddedError("no")

    with pytest.raises(SystemExit) as stopped:
        launcher._start_again("postgres", "PostgreSQL stopped", tmp_path / "log", broken)
    assert str(stopped.value).startswith(
        "postgres could not be started again (EmbeddedError: no), 4 times in a minute"
    )


def test_make_with_a_python_too_old_says_so_and_makes_no_venv(tmp_path: Path) -> None:
    """A .venv made with Python 3.10 stayed, and every later make run failed on it
    with pip's words; now an older PYTHON is named, and a .venv of one is made again."""
    old = tmp_path / "python3.10"
    old.write_text('#!/bin/sh\ncase "$1" in --version) echo "Python 3.10.13";; -c) exit 1;; esac\n')
    old.chmod(0o755)
    venv = tmp_path / "venv"
    ran = subprocess.run(
        ["make", "-s", "install", f"VENV={venv}", f"PYTHON={old}"],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode != 0
    assert ran.stderr.splitlines()[0] == (
        f"Lodestar needs Python 3.11 or newer, and {old} is Python 3.10.13: run make with "
        "PYTHON=python3.11 (or newer)"
    )
    assert not venv.exists()
