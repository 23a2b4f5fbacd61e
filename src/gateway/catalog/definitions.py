"""What of a backend's tool definition is pinned, and its digest.

The pinned part is everything that tells a model what a tool does and how to call it: `title`,
`description`, `inputSchema`, `outputSchema` and `annotations` (the name is the key of the pin,
not part of it). Anything else a backend may send (`_meta`, icons) does not change what the
model reads and is left out, so a backend that refreshes it does not quarantine the tool.

The digest is a SHA-256 over the RFC 8785 canonical JSON of that part, like the digests of calls
(`gateway.executions.digest`): key order and `1` against `1.0` do not count as changes. A part
that has no canonical form (a number beyond 2^53) is digested over its `repr`-stable JSON
instead, so such a tool can still be pinned; any change to it still changes the digest.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Mapping
from typing import Any

import orjson
import rfc8785

#: The keys of a tool definition that are pinned, in the order a diff shows them.
PINNED_KEYS = ("title", "description", "inputSchema", "outputSchema", "annotations")


def pinned_part(definition: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a backend's definition a pin covers; absent keys stay absent."""
    return {key: definition[key] for key in PINNED_KEYS if key in definition}


def definition_digest(definition: Mapping[str, Any]) -> str:
    """The lowercase SHA-256 hex digest of the pinned part of `definition`."""
    part = pinned_part(definition)
    try:
        canonical = rfc8785.dumps(part)
    except rfc8785.CanonicalizationError:
        canonical = orjson.dumps(part, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    return hashlib.sha256(canonical).hexdigest()


def readable(part: Mapping[str, Any]) -> list[str]:
    """The pinned part as indented JSON lines with sorted keys: what a diff compares."""
    return json.dumps(dict(part), indent=2, sort_keys=True, ensure_ascii=True).splitlines()


def definition_diff(accepted: Mapping[str, Any] | None, current: Mapping[str, Any], *, name: str) -> list[str]:
    """A unified diff from the accepted definition (none for a new tool) to the current one.

    Non-ASCII characters are shown escaped (`\\u200b`), so a hidden character the backend added
    is visible in the diff rather than invisible in a terminal or a page.
    """
    before = readable(accepted) if accepted is not None else []
    return list(
        difflib.unified_diff(
            before,
            readable(current),
            fromfile=f"{name} (accepted)" if accepted is not None else f"{name} (never accepted)",
            tofile=f"{name} (listed now)",
            lineterm="",
        )
    )
