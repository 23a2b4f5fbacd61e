"""Tool names from operations: valid for MCP clients and LLM APIs, stable, and never silently shared.

The rule is the catalog's (`[A-Za-z0-9_-]`, at most 64 characters): other characters become
`_`, and a name that had to change or is too long gets an 8-character digest of the original,
so two operationIds that sanitise alike (`get.user` and `get:user`) still get distinct names.
An operation without an operationId is named from its method and path: `GET /users/{id}/keys`
becomes `get_users_id_keys`.
"""

from __future__ import annotations

import hashlib
import re

MAX_TOOL_NAME_LENGTH = 64
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_DIGEST_LENGTH = 8


def derived_name(method: str, path: str) -> str:
    """The name of an operation without an operationId: method and path words joined by `_`."""
    words = [w for w in re.split(r"[^A-Za-z0-9]+", path) if w]
    return "_".join([method.lower(), *words])


def tool_name(original: str) -> str:
    """`original` made a valid tool name, shortened deterministically with a digest when needed."""
    candidate = _UNSAFE.sub("_", original)
    if candidate == original and len(candidate) <= MAX_TOOL_NAME_LENGTH:
        return candidate
    digest = hashlib.sha256(original.encode()).hexdigest()[:_DIGEST_LENGTH]
    return f"{candidate[: MAX_TOOL_NAME_LENGTH - 1 - _DIGEST_LENGTH]}_{digest}"
