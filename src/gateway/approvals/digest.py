"""The identity of a held call: a SHA-256 over a canonical JSON form of its tool and arguments.

An agent that retries a held call sends the same arguments, perhaps with keys in another order
or `1.0` for `1`; the digest must not change, or the retry would look like a new call and wait
for people all over again (or, worse, a different call would match an approval). The canonical
form is RFC 8785 (JSON Canonicalization Scheme), through the `rfc8785` library:

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


def canonical_form(tool: str, arguments: Any) -> bytes:
    """The RFC 8785 bytes of `{"arguments": arguments, "tool": tool}`."""
    try:
        return rfc8785.dumps({"arguments": arguments, "tool": tool})
    except rfc8785.CanonicalizationError as error:
        raise InvalidArguments(
            f"the arguments of {tool!r} cannot be held for approval: {error} "
            "(send large integers as strings, and no NaN or infinite numbers)"
        ) from error


def arguments_digest(tool: str, arguments: Any) -> str:
    """The lowercase SHA-256 hex digest of `canonical_form(tool, arguments)`."""
    return hashlib.sha256(canonical_form(tool, arguments)).hexdigest()
