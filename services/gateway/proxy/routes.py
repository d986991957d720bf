"""Which service owns which `/v1/` path: the one routing table of the gateway."""

from __future__ import annotations

from starlette.types import Scope

from shared.paths import sent_segments

# Longest prefix first is not needed: prefixes here never overlap.
OWNERS: dict[str, str] = {
    "/v1/events": "ingest",
    "/v1/connections": "ingest",
    "/v1/kpis": "metrics",
    "/v1/settings": "metrics",
    "/v1/alerts": "metrics",
    "/v1/fx": "metrics",
    "/v1/targets": "targets",
}
DOWNSTREAM: tuple[str, ...] = ("ingest", "metrics", "targets")


def owner_of_request(scope: Scope) -> str | None:
    """The service a request's path belongs to; None for any other path.

    A path with a ``.`` or ``..`` segment (sent plain or as ``%2e%2e``) is nobody's: the
    URL it is forwarded to would resolve it, and ``/v1/kpis/../../internal/`` would reach
    a service's routes that only the services call. The segments are those sent: a store
    "a/../b" (``a%2F..%2Fb``) is one segment, and its own."""
    if any(segment in (".", "..") for segment in sent_segments(scope)):
        return None
    path: str = scope["path"]
    for prefix, service in OWNERS.items():
        rest = path[len(prefix) :]
        if path.startswith(prefix) and (rest == "" or rest[0] in "/:?"):
            return service
    return None
