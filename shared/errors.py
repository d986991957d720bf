"""One error tree for every service, rendered one way.

REST answers ``{"error": code, "detail": ..., "errors": [{"index", "field", "reason"}]}``;
GraphQL puts the same ``code`` in ``extensions.code``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class FieldError:
    """One reason an input was refused; ``index`` names the batch item when there is one,
    ``row`` the line of an uploaded file (the header is line 1)."""

    field: str
    reason: str
    index: int | None = None
    row: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


# An answer names this many errors at most: a batch with a wrong field in every event
# is fixed from the first ones, and a body made to hold millions of them (a header of a
# million columns) does not make an answer of a hundred megabytes.
MAX_LISTED_ERRORS = 10_000


def named_briefly(names: list[str], shown: int = 20) -> str:
    """The first ``shown`` of ``names`` for a ``detail``, and how many more there are:
    ``errors`` lists each one, the detail stays a line."""
    more = len(names) - shown
    return ", ".join(names[:shown]) + (f" and {more} more" if more > 0 else "")


class LodestarError(Exception):
    status: int = 500
    code: str = "internal"
    graphql_code: str = "INTERNAL"

    def __init__(
        self,
        detail: str,
        errors: list[FieldError] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or []
        self.headers = headers or {}

    def _listed(self) -> tuple[str, list[dict[str, Any]]]:
        """The detail and the errors an answer lists: at most ``MAX_LISTED_ERRORS``."""
        if len(self.errors) <= MAX_LISTED_ERRORS:
            return self.detail, [e.as_dict() for e in self.errors]
        listed = [e.as_dict() for e in self.errors[:MAX_LISTED_ERRORS]]
        return (
            f"{self.detail} (the first {MAX_LISTED_ERRORS:,} of {len(self.errors):,} errors "
            "are listed)",
            listed,
        )

    def body(self) -> dict[str, Any]:
        detail, listed = self._listed()
        body: dict[str, Any] = {"error": self.code, "detail": detail}
        if listed:
            body["errors"] = listed
        return body

    def graphql_extensions(self) -> dict[str, Any]:
        """What a GraphQL error carries of it: the contract's code, REST's error code, the
        fields, and when to ask again (REST's ``Retry-After``: a GraphQL answer has one
        status for all its fields)."""
        extensions: dict[str, Any] = {"code": self.graphql_code, "error": self.code}
        if self.errors:
            extensions["errors"] = self._listed()[1]
        if "Retry-After" in self.headers:
            extensions["retryAfter"] = int(self.headers["Retry-After"])
        return extensions


class InvalidInput(LodestarError):
    status = 422
    code = "invalid_input"
    graphql_code = "BAD_USER_INPUT"


INVALID_JSON = "invalid JSON"
# A field a change may leave out, but not set to null: it has no "none".
NOT_NULL = "cannot be null; leave it out to keep it"


def refuse_null(value: Any) -> Any:
    """A change's field validator (``field_validator(*names)(refuse_null)``) for fields
    that may be left out but not given as null: pydantic runs it only for a value sent,
    and names the field with the body's other errors, at once."""
    if value is None:
        raise ValueError(NOT_NULL)
    return value


class InvalidJson(InvalidInput):
    """A body that is no JSON at all: one answer, naming ``body``, from every service."""

    def __init__(self) -> None:
        super().__init__(
            "the body is not valid JSON", [FieldError(field="body", reason=INVALID_JSON)]
        )


class BadRequest(LodestarError):
    status = 400
    code = "bad_request"
    graphql_code = "BAD_USER_INPUT"


class UnsupportedMediaType(LodestarError):
    status = 415
    code = "unsupported_media_type"
    graphql_code = "BAD_USER_INPUT"


class NotAcceptable(LodestarError):
    status = 406
    code = "not_acceptable"
    graphql_code = "BAD_USER_INPUT"


class PreconditionFailed(LodestarError):
    """An ``If-Match`` that no longer names what is stored: someone changed it since."""

    status = 412
    code = "precondition_failed"
    graphql_code = "BAD_USER_INPUT"


class PayloadTooLarge(LodestarError):
    status = 413
    code = "payload_too_large"
    graphql_code = "BAD_USER_INPUT"


class LengthRequired(LodestarError):
    status = 411
    code = "length_required"
    graphql_code = "BAD_USER_INPUT"


class HeadersTooLarge(LodestarError):
    status = 431
    code = "request_header_fields_too_large"
    graphql_code = "BAD_USER_INPUT"


class RequestTimeout(LodestarError):
    """A body sent too slowly: it held a reader (and a large body's turn) for as long
    as it trickled."""

    status = 408
    code = "request_timeout"
    graphql_code = "BAD_USER_INPUT"


class Unauthenticated(LodestarError):
    status = 401
    code = "invalid_token"
    graphql_code = "UNAUTHENTICATED"

    def __init__(self, detail: str = "missing or invalid access token") -> None:
        super().__init__(
            detail,
            headers={
                "WWW-Authenticate": f'Bearer error="invalid_token", error_description="{detail}"'
            },
        )


class Forbidden(LodestarError):
    status = 403
    code = "forbidden"
    graphql_code = "FORBIDDEN"


class InsufficientScope(Forbidden):
    code = "insufficient_scope"

    def __init__(self, scope: str) -> None:
        super().__init__(
            f"this call needs the scope {scope}",
            headers={"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{scope}"'},
        )
        self.scope = scope

    def graphql_extensions(self) -> dict[str, Any]:
        # Named apart from the message, for a client to ask for a token that holds it.
        return {**super().graphql_extensions(), "scope": self.scope}


class NotFound(LodestarError):
    status = 404
    code = "not_found"
    graphql_code = "NOT_FOUND"


class Conflict(LodestarError):
    status = 409
    code = "conflict"
    graphql_code = "BAD_USER_INPUT"


class RateLimited(LodestarError):
    """Too many requests from one client; ``Retry-After`` says when the next one may pass."""

    status = 429
    code = "rate_limited"
    graphql_code = "RATE_LIMITED"

    def __init__(self, retry_after_seconds: int, detail: str = "too many requests") -> None:
        # Whole seconds, at least 1: "Retry-After: 0" would invite an immediate retry.
        self.retry_after_seconds = max(1, retry_after_seconds)
        super().__init__(
            f"{detail}; retry after {self.retry_after_seconds} s",
            headers={"Retry-After": str(self.retry_after_seconds)},
        )


# What a 503 tells a client whose request may pass when sent again in a moment.
RETRY_SOON = {"Retry-After": "1"}


class UpstreamUnavailable(LodestarError):
    status = 503
    code = "unavailable"
    graphql_code = "INTERNAL"

    @classmethod
    def for_now(cls, detail: str) -> UpstreamUnavailable:
        """A service or connection that is away for now (restarting, overloaded): the
        client is told to send the request again in a moment, which is safe, as every
        write is idempotent or refused whole."""
        return cls(detail, headers=RETRY_SOON)


class Contended(LodestarError):
    """The database rolled the request's transaction back for a concurrent one's sake
    (a deadlock, a serialization failure): nothing of it was kept, and sent again it
    passes."""

    status = 503
    code = "unavailable"
    graphql_code = "INTERNAL"

    def __init__(self) -> None:
        super().__init__(
            "a concurrent request held the same data; nothing was kept, send it again",
            headers=RETRY_SOON,
        )
