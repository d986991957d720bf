"""OAuth errors, rendered as RFC 6749 §5.2 bodies rather than the REST error shape."""

from __future__ import annotations

from typing import Any

from shared.errors import LodestarError


class OAuthError(LodestarError):
    status = 400

    def __init__(self, code: str, description: str, status: int = 400, basic: bool = False) -> None:
        headers = {"Cache-Control": "no-store", "Pragma": "no-cache"}
        if basic:
            headers["WWW-Authenticate"] = 'Basic realm="lodestar"'
        super().__init__(description, headers=headers)
        self.code = code
        self.status = status

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "error_description": self.detail}
