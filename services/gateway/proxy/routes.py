"""Which service owns which `/v1/` path: the one routing table of the gateway."""

from __future__ import annotations

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


def owner_of(path: str) -> str | None:
    """The service a (decoded) path belongs to; None for any other path.

    A path with a ``.`` or ``..`` segment (sent plain or as ``%2e%2e``, ``%2F``) is
    nobody's: the URL it is forwarded to would resolve it, and ``/v1/kpis/../../internal/``
    would reach a service's routes that only the services call."""
    if any(segment in (".", "..") for segment in path.split("/")):
        return None
    for prefix, service in OWNERS.items():
        rest = path[len(prefix) :]
        if path.startswith(prefix) and (rest == "" or rest[0] in "/:?"):
            return service
    return None
