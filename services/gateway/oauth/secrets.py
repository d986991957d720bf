"""Client secrets: random, shown once, stored only as a salted hash.

Client secrets are 256-bit random values, so a salted SHA-256 is as hard to reverse
as a slow hash would be and keeps the token endpoint fast; user passwords, which are
guessable, need a memory-hard hash instead.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

_SCHEME = "sha256"


def new_client_id() -> str:
    return f"cl_{secrets.token_hex(12)}"


def new_client_secret() -> str:
    return secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    salt = secrets.token_hex(16)
    digest = hashlib.sha256(f"{salt}:{secret}".encode()).hexdigest()
    return f"{_SCHEME}${salt}${digest}"


def verify_secret(secret: str, stored: str) -> bool:
    try:
        scheme, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != _SCHEME:
        return False
    candidate = hashlib.sha256(f"{salt}:{secret}".encode()).hexdigest()
    return hmac.compare_digest(candidate, digest)
