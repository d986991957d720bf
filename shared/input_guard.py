"""What no route can take, refused before any route runs, naming where it is.

PostgreSQL keeps no NUL character in text or jsonb, so a NUL anywhere in a request's
path, query or JSON body would reach a statement and fail as a server error; one
check here covers every route of every service, present and future. So would a lone
UTF-16 surrogate escape in a JSON string (``"\ud800"``, as JavaScript's
``JSON.stringify`` writes half an emoji), which is no character and has no UTF-8. Both
are refused in GraphQL requests too, before the token is read, as on every route. A path or query
percent-encoding bytes that are no UTF-8 is refused as well, not read with U+FFFD. A query
parameter given twice is refused too: the API takes lists comma-separated, and
silently keeping one of two values answers a question that was not asked; so is a
header read as one value (a token, an Idempotency-Key). A compressed body is 415.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qsl, unquote_to_bytes

import orjson
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.errors import (
    INVALID_JSON,
    FieldError,
    InvalidInput,
    LodestarError,
    UnsupportedMediaType,
)
from shared.events import NO_NUL

REPEATED = "given more than once; a list takes its values comma-separated"
ONE_VALUE = "given more than once; it takes one value"
# By their names as HTTP/1.1 and ASGI give them (lower case), as errors name them.
SINGLE_VALUED_HEADERS = {
    b"authorization": "Authorization",
    b"content-type": "Content-Type",
    b"idempotency-key": "Idempotency-Key",
}
NOT_UTF8 = "percent-encodes bytes that are no UTF-8 text"
LONE_SURROGATE = "holds a lone UTF-16 surrogate (\\ud800 to \\udfff), which is no character"
_JSON_NUL = b"\\u0000"
UTF8_BOM = b"\xef\xbb\xbf"
# Half of a surrogate pair, written as a JSON escape (a whole pair is read as one
# character and passes).
_JSON_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
GRAPHQL_PATH = "/graphql"
# In the request's state: the guard answered it (see ``InputGuardMiddleware._answer``).
REFUSED_BY_GUARD = "refused_by_guard"
# Routes that answer a repeated parameter themselves: OAuth's authorization endpoint
# sends its errors back to the client's redirect URI (RFC 6749 §4.1.2.1).
REPEATS_ANSWERED_BY_ROUTE = frozenset({"/oauth/authorize"})
# The one DELETE whose body a route reads: erasing a tenant repeats its id to confirm.
_DELETE_READING_BODY = re.compile(r"/v1/tenants/[^/]+")


def _shown(name: str) -> str:
    """A name as JSON escapes what it could not show (a NUL, a lone surrogate)."""
    return name.replace("\x00", "\\u0000").encode("utf-8", "backslashreplace").decode()


def _path_errors(scope: Scope) -> list[FieldError]:
    if "\x00" in scope["path"]:
        return [FieldError("path", NO_NUL)]
    try:
        unquote_to_bytes(scope.get("raw_path") or b"").decode("utf-8")
    except UnicodeDecodeError:
        # The server decoded it with U+FFFD in place of the bytes: a store or a grant
        # by that name would be none the client meant.
        return [FieldError("path", NOT_UTF8)]
    return []


def _header_errors(headers: list[tuple[bytes, bytes]]) -> list[FieldError]:
    """Headers read as one value, given more than once: keeping either answers for a
    request the client may not have meant (another key, another token)."""
    seen: set[bytes] = set()
    errors = []
    for name, _ in headers:
        name = name.lower()
        if name in SINGLE_VALUED_HEADERS and name in seen:
            errors.append(FieldError(f"header.{SINGLE_VALUED_HEADERS[name]}", ONE_VALUE))
        seen.add(name)
    return errors


def _unsupported_coding(headers: list[tuple[bytes, bytes]]) -> UnsupportedMediaType | None:
    """415 for a body in a content coding (gzip, br), or a transfer coding other than
    chunked: bodies are read as sent, and a compressed batch read as JSON would be
    refused as no JSON, which it is not (the server undoes chunked alone)."""
    for header, taken in ((b"content-encoding", ()), (b"transfer-encoding", ("chunked",))):
        codings = [
            coding.strip().lower()
            for name, value in headers
            if name.lower() == header
            for coding in value.decode("latin-1").split(",")
        ]
        refused = [c for c in codings if c and c != "identity" and c not in taken]
        if refused:
            named = "Content-Encoding" if header == b"content-encoding" else "Transfer-Encoding"
            reason = "must be identity (or absent)" if not taken else "must be chunked (or absent)"
            return UnsupportedMediaType(
                f"the body must be sent uncompressed, not in the {refused[0]} coding",
                [FieldError(f"header.{named}", reason)],
                # RFC 7694 §3: the codings the server takes.
                headers={"Accept-Encoding": "identity"},
            )
    return None


# The charsets a body may be declared in, by the names clients give them, and the
# codec it is read with: UTF-8, of which ASCII is a part; a CSV file may also be
# GB18030 (of which GBK and GB2312 are parts), as Excel in a Chinese locale saves one.
JSON_CHARSETS = {"utf-8": "utf-8", "utf8": "utf-8", "us-ascii": "utf-8", "ascii": "utf-8"}
CSV_CHARSETS = {**JSON_CHARSETS, "gb18030": "gb18030", "gbk": "gb18030", "gb2312": "gb18030"}


def declared_charset(content_type: str) -> str | None:
    """The charset a Content-Type names, lower-cased; None when it names none."""
    _, *options = content_type.split(";")
    for option in options:
        key, _, charset = option.partition("=")
        if key.strip().lower() == "charset":
            return charset.strip().strip('"').lower()
    return None


def _unsupported_charset(headers: list[tuple[bytes, bytes]]) -> UnsupportedMediaType | None:
    """415 for a JSON or CSV body declared in a charset it is not read in: it would be
    refused as no JSON, or taken with wrong letters (RFC 8259 §8.1)."""
    for name, value in headers:
        if name.lower() != b"content-type":
            continue
        content_type = value.decode("latin-1")
        media = content_type.split(";", 1)[0].strip().lower()
        if not (media.endswith("json") or media == "text/csv"):
            return None
        charset = declared_charset(content_type)
        readable, names = (
            (CSV_CHARSETS, ("UTF-8 or GB18030", "utf-8 or gb18030"))
            if media == "text/csv"
            else (JSON_CHARSETS, ("UTF-8", "utf-8"))
        )
        if charset is not None and charset not in readable:
            return UnsupportedMediaType(
                f"the body must be {names[0]}, not {charset or 'an empty charset'}",
                [FieldError("header.Content-Type", f"charset must be {names[1]} (or absent)")],
            )
        return None
    return None


def _query_errors(query_string: bytes, repeats: bool = True) -> list[FieldError]:
    errors: list[FieldError] = []
    seen: set[str] = set()
    try:
        pairs = parse_qsl(
            query_string.decode("latin-1"),
            keep_blank_values=True,
            encoding="utf-8",
            errors="strict",
        )
    except UnicodeDecodeError:
        return [FieldError("query", NOT_UTF8)]
    for name, value in pairs:
        if "\x00" in name or "\x00" in value:
            errors.append(FieldError(_shown(name), NO_NUL))
        elif repeats and name in seen:
            errors.append(FieldError(name, REPEATED))
        seen.add(name)
    return errors


NESTED_TOO_DEEP = "is nested too deeply to read"


class NotJsonConstant(ValueError):
    """NaN, Infinity or -Infinity, which Python's parser takes and no JSON holds."""


def _refuse_constant(constant: str) -> Any:
    raise NotJsonConstant(f"{constant} is not JSON")


def _whole_number(text: str) -> int | float:
    # Python converts at most sys.get_int_max_str_digits() digits (4,300) and raised
    # ValueError beyond, which read as "invalid JSON": as a number it is too large.
    if len(text) > sys.get_int_max_str_digits():
        return -math.inf if text.startswith("-") else math.inf
    return int(text)


def loads_beyond_doubles(
    document: bytes | str, object_pairs_hook: Callable[[list[tuple[str, Any]]], Any] | None = None
) -> Any:
    """A JSON document orjson refused, read again by the standard library, which takes a
    number beyond a double (1e400, an id of 400 digits written as a number) as the JSON
    it is, so that validation names its field; NaN and Infinity stay no JSON. Raises
    ValueError for a document that is no JSON and RecursionError for one nested too deep."""
    text = document.decode("utf-8") if isinstance(document, bytes) else document
    return json.loads(
        text,
        object_pairs_hook=object_pairs_hook,
        parse_constant=_refuse_constant,
        parse_int=_whole_number,
    )


def _flaw(text: str) -> str | None:
    """Why a string cannot be taken, if it cannot."""
    if "\x00" in text:
        return NO_NUL
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return LONE_SURROGATE
    return None


def _flawed_paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], str]]:
    if isinstance(value, str):
        if reason := _flaw(value):
            yield path, reason
    elif isinstance(value, dict):
        for key, item in value.items():
            if reason := _flaw(key):
                yield (*path, _shown(key)), reason
            else:
                yield from _flawed_paths(item, (*path, key))
    elif isinstance(value, list):
        for position, item in enumerate(value):
            yield from _flawed_paths(item, (*path, position))


def _body_errors(
    body: bytes, field_of: Callable[[tuple[Any, ...]], tuple[int | None, str]]
) -> list[FieldError]:
    """The places of a JSON body holding a NUL or a lone surrogate; a body that is no
    JSON is the route's."""
    if _JSON_NUL not in body and not _JSON_SURROGATE.search(body):
        return []
    try:
        # The standard library's parser, which keeps a lone surrogate to be named
        # (orjson refuses the whole document).
        document = json.loads(body)
        flawed = list(_flawed_paths(document))
    except ValueError:
        return []
    except RecursionError:
        # Nested deeper than either parser or the walk above goes: no route reads it.
        index, field = field_of(("body",))
        return [FieldError(field, NESTED_TOO_DEEP, index=index)]
    errors = []
    for path, reason in flawed:
        index, field = field_of(("body", *path))
        errors.append(FieldError(field, reason, index=index))
    return errors


class _Parsed(dict[str, Any]):
    """An object as parsed, with the names it gave more than once: kept beside its
    fields, as any name (even "\u0000...") may be one of them."""

    twice: tuple[str, ...] = ()


def _marking_names_twice(pairs: list[tuple[str, Any]]) -> _Parsed:
    obj = _Parsed(pairs)
    if len(obj) != len(pairs):
        counts = Counter(name for name, _ in pairs)
        obj.twice = tuple(sorted(name for name, count in counts.items() if count > 1))
    return obj


def _paths_named_twice(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(value, list):
        for position, item in enumerate(value):
            yield from _paths_named_twice(item, (*path, position))
    elif isinstance(value, _Parsed):
        for name in value.twice:
            yield (*path, name)
        for name, item in value.items():
            yield from _paths_named_twice(item, (*path, name))


# The escape that writes a colon: what could make the count below miss a field given
# twice.
_ESCAPED_COLON = re.compile(rb"\\u003[aA]")


def _counted_once(body: bytes, parsed: Any) -> bool:
    """True when counting proves that no object of the body names a field twice, as
    for nearly every body, without the slower parse that sees each name (20 to 40 ms
    for a push of 5,000 events). Outside strings a colon follows each key, once; inside
    them, one is a character of the text. The parsed objects keep one value of each
    name, so they written out again hold as many colons as ``body`` only when no name
    (nor its value) was dropped, unless an escape wrote a colon that ``body`` does not
    show."""
    if _ESCAPED_COLON.search(body):
        return False
    try:
        written = orjson.dumps(parsed)
    except TypeError:  # deeper than orjson writes (254)
        return False
    return body.count(b":") == written.count(b":")


_UNREAD = object()


def misread_json(
    body: bytes, field_of: Callable[[tuple[Any, ...]], tuple[int | None, str]]
) -> list[FieldError]:
    """What a JSON body holds that the routes' parser (Python's) would read silently
    otherwise than JSON means it. A field given twice in one object: either value is
    kept (the last, here), and an ERP that writes a quantity and then its correction
    would have one of them taken without a word (the CSV upload refuses a column named
    twice, the query string a parameter). NaN or Infinity, which it reads as numbers:
    no JSON at all, ``body`` is named."""
    if b":" not in body:
        return []
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:  # 1e400, more than 1,024 levels, or no JSON
        parsed = _UNREAD
    if parsed is not _UNREAD and _counted_once(body, parsed):
        return []
    try:
        # As the lenient reader takes numbers: 1e400 and 5,000 digits are JSON here too.
        paths = list(_paths_named_twice(loads_beyond_doubles(body, _marking_names_twice)))
    except NotJsonConstant:
        # The routes' own parser (Python's) would read NaN or Infinity as a number, and
        # a credential would be kept holding one: it is no JSON.
        index, field = field_of(("body",))
        return [FieldError(field, INVALID_JSON, index=index)]
    except ValueError:
        return []  # no JSON: the route says so
    except RecursionError:
        if parsed is _UNREAD:
            return []  # no route reads it either: each refuses it, the token read first
        # Deeper than the names can be read here, yet not than orjson (which GraphQL
        # and pushes read with) goes: a name given twice would pass.
        index, field = field_of(("body",))
        return [FieldError(field, NESTED_TOO_DEEP, index=index)]
    errors = []
    for path in paths:
        index, field = field_of(("body", *path))
        errors.append(FieldError(field, "given more than once", index=index))
    return errors


NOT_UTF8_JSON = InvalidInput(
    "the body is not UTF-8 JSON", [FieldError(field="body", reason="invalid JSON: not UTF-8")]
)


def _utf8(body: bytes) -> bool:
    if b"\x00" in body:
        # UTF-16 or UTF-32 of ASCII text: valid UTF-8 byte by byte, but a raw NUL is in
        # no UTF-8 JSON (a string holds it escaped), and the routes' parser would guess
        # the encoding past the NUL checks below.
        return False
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _read_as_json(scope: Scope) -> bool:
    """Whether the routes read the body as JSON: sent as a JSON type in any case, or
    (FastAPI reading it so, as the event routes do) with no type at all."""
    typed = dict(scope["headers"]).get(b"content-type", b"")
    media = typed.partition(b";")[0].strip().lower()
    if not media:
        # Only bodies a route reads: no DELETE's but an erasure's.
        if scope["method"] == "DELETE":
            return _DELETE_READING_BODY.fullmatch(scope["path"]) is not None
        return scope["method"] in ("POST", "PUT", "PATCH")
    return b"json" in media


def _graphql_query_misread(
    scope: Scope, field_of: Callable[[tuple[Any, ...]], tuple[int | None, str]]
) -> list[FieldError]:
    """``misread_json`` of a GraphQL GET's ``variables`` or ``extensions``, named as in a
    POST's body (``variables.i.metrics``)."""
    errors: list[FieldError] = []
    # Readable (UTF-8, each parameter once): the query string passed its checks.
    for name, value in parse_qsl(scope.get("query_string", b"").decode("latin-1")):
        if name in ("variables", "extensions"):
            wrapped = b'{"' + name.encode() + b'": ' + value.encode() + b"}"
            # What is no JSON (a NaN) is this parameter, not a body.
            errors += [
                replace(error, field=name) if error.field == "body" else error
                for error in misread_json(wrapped, field_of)
            ]
    return errors


class InputGuardMiddleware:
    """See the module; ``field_of`` turns a JSON path into (event index, field) as the
    validation errors name them, ``render`` an error into its response."""

    def __init__(
        self,
        app: ASGIApp,
        field_of: Callable[[tuple[Any, ...]], tuple[int | None, str]],
        render: Callable[[LodestarError, Scope], Response],
        forwarded: Callable[[Scope], bool] | None = None,
    ) -> None:
        self.app = app
        self.field_of = field_of
        self.render = render
        # Paths whose bodies go on to a service with this guard of its own: names given
        # twice are read there (a push's two megabytes parsed twice over otherwise).
        self.forwarded = forwarded or (lambda _scope: False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        errors = (
            _path_errors(scope)
            + _query_errors(
                scope.get("query_string", b""),
                repeats=scope["path"] not in REPEATS_ANSWERED_BY_ROUTE,
            )
            + _header_errors(scope["headers"])
        )
        if errors:
            await self._refuse(errors, scope, receive, send)
            return
        unreadable = _unsupported_coding(scope["headers"]) or _unsupported_charset(scope["headers"])
        if unreadable is not None:
            await self._answer(unreadable, scope, receive, send)
            return
        if scope["path"] == GRAPHQL_PATH and scope["method"] in ("GET", "HEAD"):
            errors = _graphql_query_misread(scope, self.field_of)
            if errors:
                await self._refuse(errors, scope, receive, send)
                return
        if not _read_as_json(scope):
            await self.app(scope, receive, send)
            return
        body, complete = await read_body(receive)
        if not complete:
            return  # the client went away before its request was whole
        # .NET's and Windows tools' UTF-8 writers start with a byte order mark, which a
        # JSON parser may ignore (RFC 8259 §8.1) and the CSV upload already does.
        body = body.removeprefix(UTF8_BOM)
        if not _utf8(body) and scope["path"] != GRAPHQL_PATH:
            # JSON is UTF-8 (RFC 8259 §8.1). A parser that guesses UTF-16 or UTF-32 would
            # read one past the NUL and surrogate checks below, which look for UTF-8.
            # (GraphQL refuses it itself, 400 as GraphQL over HTTP has it.)
            await self._answer(NOT_UTF8_JSON, scope, receive, send)
            return
        errors = _body_errors(body, self.field_of)
        if not errors and not self.forwarded(scope):
            errors = misread_json(body, self.field_of)
        if errors:
            await self._refuse(errors, scope, receive, send)
            return
        await self.app(scope, replay(body, receive), send)

    async def _refuse(
        self, errors: list[FieldError], scope: Scope, receive: Receive, send: Send
    ) -> None:
        await self._answer(_refusal(errors), scope, receive, send)

    async def _answer(
        self, error: LodestarError, scope: Scope, receive: Receive, send: Send
    ) -> None:
        # Answered here, before any route or service: the audit records it (see
        # shared.audit), as a path the gateway would have forwarded never arrives.
        scope.setdefault("state", {})[REFUSED_BY_GUARD] = True
        await self.render(error, scope)(scope, receive, send)


def _refusal(errors: list[FieldError]) -> InvalidInput:
    shown = "; ".join(f"{e.field}: {e.reason}" for e in errors[:5])
    return InvalidInput(f"invalid request: {shown}", errors[:100])


def misread_body_refusal(
    scope: Scope, body: bytes, field_of: Callable[[tuple[Any, ...]], tuple[int | None, str]]
) -> InvalidInput | None:
    """``misread_json`` of a body the guard passed on unchecked (a forwarded path's), as
    the guard would refuse it; None when the routes do not read it as JSON or it holds
    nothing misread."""
    if not _read_as_json(scope):
        return None
    errors = misread_json(body, field_of)
    return _refusal(errors) if errors else None


async def read_body(receive: Receive) -> tuple[bytes, bool]:
    """The request's body; ``complete`` is False when the client went away mid-body."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), False
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks), True


def replay(body: bytes, receive: Receive) -> Receive:
    """The body read already, then whatever the client sends next (a disconnect)."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed
