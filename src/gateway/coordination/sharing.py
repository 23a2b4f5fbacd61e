"""What other agents in a workflow may read of a call's result: a short, redacted summary.

Only for the tools whose connector file says `share_result = true`: a result can hold anything
(customer data, secrets a backend echoes), so nothing is shared by default. The summary is the
result's text content, or its structured content as JSON when it has no text, passed through
the audit log's redaction and cut to `MAX_SUMMARY_CHARS` characters.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from gateway.audit.redaction import Redactor
from gateway.coordination.workflows import MAX_SUMMARY_CHARS

#: How much of a result's text the redaction scans: the summary keeps far less.
_SCANNED_CHARS = 4096


def result_summary(
    result: Mapping[str, Any], redactor: Redactor, *, tool: str | None = None, max_chars: int = MAX_SUMMARY_CHARS
) -> str | None:
    """The summary of a successful tool result, or None when it says nothing in text or structure."""
    content = result.get("content")
    parts = [
        str(item.get("text", ""))
        for item in (content if isinstance(content, list) else ())
        if isinstance(item, Mapping) and item.get("type") == "text"
    ]
    joined = " ".join(part.strip() for part in parts if part.strip())
    structured = result.get("structuredContent")
    if joined or structured is None:
        text = redactor.redact_text(joined[:_SCANNED_CHARS], max_chars=_SCANNED_CHARS)
    else:
        redacted = redactor.redact_value(structured, tool=tool)
        text = orjson.dumps(redacted, option=orjson.OPT_SORT_KEYS).decode()
    # Whitespace runs become one space; a NUL, which PostgreSQL cannot store, becomes U+FFFD.
    text = " ".join(text.split()).replace("\x00", "\ufffd")
    if not text:
        return None
    return text if len(text) <= max_chars else text[: max_chars - 1] + "…"
