"""An address where nothing answers, for tests of a service or broker being down."""

import socket
from collections.abc import Iterator
from contextlib import contextmanager

from devstack.embedded import LOCALHOST


@contextmanager
def refusing_port() -> Iterator[int]:
    """A port on 127.0.0.1 that refuses connections while the block runs.

    The port stays bound without listening, so a connection is refused at once and no
    server started meanwhile can be given it. A port that was merely free a moment ago
    may be handed to the very gateway under test, which then proxies to itself."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCALHOST, 0))
        port: int = sock.getsockname()[1]
        yield port
