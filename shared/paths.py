"""Path parameters that take whatever an identifier may hold."""

from __future__ import annotations

from starlette.convertors import PathConvertor, register_url_convertor


class _AnyPath(PathConvertor):
    # Starlette's ``path`` is ``.*``, which stops at a line feed: a store pushed as
    # "s\n1" (events take it) was a 404 "Not Found" at its own settings route.
    regex = "(?s:.*)"


# Write a route's parameter as ``{store_id:anything}``: naming this constant imports the
# module, which registers the convertor before the route is compiled.
ANY_PATH = "anything"
register_url_convertor(ANY_PATH, _AnyPath())
