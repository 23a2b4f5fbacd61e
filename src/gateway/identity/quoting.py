"""Putting attacker-chosen values (issuer, key id, algorithm) into refusals without harm.

A refusal is logged and sent back to the caller, so what a token says about itself must not be
able to fill a log line or smuggle control characters into one.
"""

from __future__ import annotations

#: How much of an attacker-chosen value a refusal may quote.
_MAX_QUOTED_LENGTH = 80


def quoted(value: object) -> str:
    """An attacker-chosen value made safe to put in a refusal: short, quoted, ASCII only."""
    if not isinstance(value, str):
        return type(value).__name__ if value is not None else "(none)"
    if len(value) > _MAX_QUOTED_LENGTH:
        value = value[:_MAX_QUOTED_LENGTH] + "..."
    return ascii(value)
