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
    for prefix, service in OWNERS.items():
        rest = path[len(prefix) :]
        if path.startswith(prefix) and (rest == "" or rest[0] in "/:?"):
            return service
    return None
