"""How a receiver knows a message came from this gateway, is recent, and is not one it already handled.

Every delivery carries three headers:

- `X-Gateway-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`. The time is
  inside the MAC so a captured message cannot be replayed later than the receiver's tolerance, and
  the MAC covers the exact bytes of the body, so verify before parsing. More than one `v1=` may
  appear (one per secret while a secret is rotated); any that matches is enough.
- `X-Gateway-Event`: `created`, `escalated`, `decided`, `expired` or `tool_quarantined`, to route without parsing.
- `X-Gateway-Delivery`: one id per message and webhook, the same on every retry of it, so a
  receiver that saw it already (a retry after a lost answer) can drop the repeat.

Verifying, in any language (Python shown; `verify` below does exactly this)::

    fields = dict(part.split("=", 1) for part in header.split(","))   # keep every v1 if several
    t = int(fields["t"])
    assert abs(time.time() - t) <= 300                                   # the tolerance
    expected = hmac.new(secret, f"{t}.".encode() + raw_body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(expected, fields["v1"])                   # constant time

Use the raw body as received: a re-serialised JSON object has other bytes and will not match.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-Gateway-Signature"
EVENT_HEADER = "X-Gateway-Event"
DELIVERY_HEADER = "X-Gateway-Delivery"
#: Seconds a receiver accepts a signature's time away from its own clock, by default.
DEFAULT_TOLERANCE = 300.0


class InvalidSignature(ValueError):
    """The signature header is missing, malformed, too old or too new, or signed by another secret."""


def _key(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else secret


def _mac(secret: str | bytes, timestamp: int, body: bytes) -> str:
    return hmac.new(_key(secret), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: str | bytes, body: bytes, *, timestamp: int | None = None) -> str:
    """The `X-Gateway-Signature` value for `body`, signed now unless `timestamp` says when."""
    moment = int(time.time()) if timestamp is None else timestamp
    return f"t={moment},v1={_mac(secret, moment, body)}"


def delivery_headers(
    *, body: bytes, event: str, delivery_id: str, secret: str | bytes | None, timestamp: int | None = None
) -> dict[str, str]:
    """Headers of one attempt: signed afresh each time, so a retry after a long wait is still within tolerance."""
    headers = {"Content-Type": "application/json", EVENT_HEADER: event, DELIVERY_HEADER: delivery_id}
    if secret is not None:
        headers[SIGNATURE_HEADER] = sign(secret, body, timestamp=timestamp)
    return headers


def verify(
    secret: str | bytes,
    header: str | None,
    body: bytes,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> int:
    """Check `header` against `body`; returns the signed time, raises `InvalidSignature` saying what is wrong."""
    if not header:
        raise InvalidSignature(f"no {SIGNATURE_HEADER} header")
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            raise InvalidSignature(f"malformed {SIGNATURE_HEADER} element {part!r}")
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise InvalidSignature(f"the signature time {value!r} is not a whole number of seconds") from None
        elif key == "v1":
            candidates.append(value)
    if timestamp is None:
        raise InvalidSignature("the signature has no time (t=)")
    if not candidates:
        raise InvalidSignature("the signature has no v1= value")
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise InvalidSignature(f"the signature time is {current - timestamp:.0f}s away from now, beyond {tolerance}s")
    expected = _mac(secret, timestamp, body)
    if not any(hmac.compare_digest(expected, candidate) for candidate in candidates):
        raise InvalidSignature("no v1= value matches the body under this secret")
    return timestamp
