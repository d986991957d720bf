"""One spelling of each mailbox, whatever way it was typed.

Sellers type addresses with Chinese input methods (full-width letters and at signs)
and under internationalised domains, which browsers may hand over as Unicode
(``深圳科技.中国``) or as their ASCII form (``xn--fesw6x98iq2l.xn--fiqs8s``): each is one
mailbox, so one user and one sign-in.
"""

from __future__ import annotations

import unicodedata

import idna

# RFC 5321's longest path less its angle brackets: no mailbox has a longer address.
MAX_EMAIL_LENGTH = 254


def canonical_email(address: str) -> str:
    """The address with its width and case folded (NFKC, lower case) and its domain
    in Unicode as IDNA 2008 maps it; a domain IDNA refuses stays as typed, folded."""
    folded = unicodedata.normalize("NFKC", address).strip()
    local, at, domain = folded.rpartition("@")
    if not at:
        return folded.lower()
    try:
        domain = idna.decode(idna.encode(domain, uts46=True))
    except (idna.IDNAError, UnicodeError):
        domain = domain.lower()
    return f"{local.lower()}@{domain}"


def stored_spellings(address: str) -> list[str]:
    """How a user with this address may be stored: canonically, or (added before
    addresses were made canonical) with the domain in its ASCII form."""
    canonical = canonical_email(address)
    local, at, domain = canonical.rpartition("@")
    if not at:
        return [canonical]
    try:
        ascii_form = f"{local}@{idna.encode(domain).decode('ascii')}"
    except (idna.IDNAError, UnicodeError):
        return [canonical]
    return list(dict.fromkeys([canonical, ascii_form]))
