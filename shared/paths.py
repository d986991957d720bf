"""Path parameters that take whatever an identifier may hold."""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

from starlette.convertors import PathConvertor, register_url_convertor
from starlette.types import Scope


class _AnyPath(PathConvertor):
    # Starlette's ``path`` is ``.*``, which stops at a line feed: a store pushed as
    # "s\n1" (events take it) was a 404 "Not Found" at its own settings route.
    regex = "(?s:.*)"


# Write a route's parameter as ``{store_id:anything}``: naming this constant imports the
# module, which registers the convertor before the route is compiled.
ANY_PATH = "anything"
register_url_convertor(ANY_PATH, _AnyPath())


def sent_segments(scope: Scope) -> list[str]:
    """The request path's segments as the client sent them, each decoded: an encoded
    ``/`` (``a%2F..%2Fb``) stays inside its segment, where the decoded path would split
    it in three."""
    raw: bytes | None = scope.get("raw_path")
    if raw is None:
        return str(scope["path"]).split("/")
    return [unquote_to_bytes(segment).decode(errors="replace") for segment in raw.split(b"/")]
