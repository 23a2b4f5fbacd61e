"""Approval ids: UUIDv7 (RFC 9562, section 5.7), which Python 3.11's `uuid` module lacks.

Time-ordered ids keep new rows at the end of the primary-key index (no random page splits) and
let people read roughly when an approval was made from its id; the 74 random bits keep ids
unguessable enough that knowing one approval's id tells nothing about the next.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime


def uuid7(moment: datetime) -> uuid.UUID:
    """A UUIDv7 for `moment`: 48 bits of Unix milliseconds, version 7, 12 + 62 random bits, variant 10.

    Layout (RFC 9562, 5.7): `unix_ts_ms` (48) | `ver` = 0b0111 (4) | `rand_a` (12) | `var` = 0b10 (2) |
    `rand_b` (62). Ids made within one millisecond are unordered among themselves, which the
    RFC allows; nothing here depends on their order within a millisecond.
    """
    milliseconds = int(moment.timestamp() * 1000)
    if not 0 <= milliseconds < 1 << 48:
        raise ValueError(f"{moment} is outside the range of UUIDv7 timestamps")
    rand_a = secrets.randbits(12)
    rand_b = secrets.randbits(62)
    value = (milliseconds << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b
    return uuid.UUID(int=value)
