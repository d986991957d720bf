"""Code page 936, in which Excel on Chinese Windows reads and writes a CSV: GBK, with
the euro sign as the one byte 0x80, which Python's GBK lacks and GB18030 writes as two
other bytes. Decoding or encoding with ``errors=EURO_AS_0X80`` reads or writes it so."""

from __future__ import annotations

import codecs

EURO_AS_0X80 = "lodestar-euro-as-0x80"


def _euro_as_0x80(error: UnicodeError) -> tuple[str | bytes, int]:
    if isinstance(error, UnicodeDecodeError) and error.object[error.start] == 0x80:
        return "\u20ac", error.start + 1
    if isinstance(error, UnicodeEncodeError):
        euros = error.object[error.start : error.end]
        if euros == "\u20ac" * len(euros):
            return b"\x80" * len(euros), error.end
    raise error


codecs.register_error(EURO_AS_0X80, _euro_as_0x80)
