"""The identity of a call: a SHA-256 over a canonical JSON form of its tool and arguments.

An agent that retries a call sends the same arguments, perhaps with keys in another order or
`1.0` for `1`; the digest must not change, or the retry would look like a new call: a held call
would wait for people all over again, a de-duplicated one would run twice (or, worse, a different
call would match an approval or a recorded result). Held calls (`gateway.approvals`) and
idempotency keys (`gateway.coordination.idempotency`) both name calls by it. The canonical form
is RFC 8785 (JSON Canonicalization Scheme), through the `rfc8785` library:

- the value hashed is the object `{"arguments": <arguments>, "tool": <exposed tool name>}`;
- object keys are sorted by their UTF-16 code units, with no whitespace anywhere;
- strings are UTF-8, escaping only what JSON requires (`é` stays `é`, not `\\u00e9`), and are
  not Unicode-normalised: NFC and NFD spellings of one word are different arguments;
- numbers are serialised as ECMAScript does for IEEE 754 doubles, so `1`, `1.0` and `1e0` are
  one value, `1e21` is `1e+21`, and `-0.0` is `0`.

Numbers a double cannot hold exactly (integers beyond ±(2^53 - 1)) and NaN or infinities have no
canonical form: two different calls could share a digest, so such arguments are refused.
"""

from __future__ import annotations

import hashlib
from typing import Any

import rfc8785

from gateway.errors import InvalidArguments


def canonical_form(tool: str, arguments: Any, *, purpose: str = "held for approval") -> bytes:
    """The RFC 8785 bytes of `{"arguments": arguments, "tool": tool}`.

    `purpose` completes the refusal "the arguments of <tool> cannot be ..." for the agent.
    """
    try:
        return rfc8785.dumps({"arguments": arguments, "tool": tool})
    except rfc8785.CanonicalizationError as error:
        raise InvalidArguments(
            f"the arguments of {tool!r} cannot be {purpose}: {error} "
            "(send large integers as strings, and no NaN or infinite numbers)"
        ) from error


def arguments_digest(tool: str, arguments: Any, *, purpose: str = "held for approval") -> str:
    """The lowercase SHA-256 hex digest of `canonical_form(tool, arguments)`."""
    return hashlib.sha256(canonical_form(tool, arguments, purpose=purpose)).hexdigest()
