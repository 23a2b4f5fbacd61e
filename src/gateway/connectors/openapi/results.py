"""An API's answer as an MCP tool result.

- A 2xx JSON body becomes `structuredContent` (an object as it is; any other JSON value under
  `result`) and a text rendering of it, cut at `TEXT_LIMIT` characters, for clients that read
  only text.
- Another 2xx body becomes text (an image becomes image content); an empty one says so.
- A 4xx or 5xx becomes a tool error (`isError`) naming the status, with the body cut at
  `ERROR_BODY_LIMIT` characters; an HTML error page is reduced to its visible text first, so the
  model reads "Service down for maintenance", not markup.
"""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser
from http import HTTPStatus
from typing import Any

import orjson

from gateway.connectors.base import JsonObject

#: Characters of a JSON result's text rendering; the whole value is in `structuredContent`.
TEXT_LIMIT = 64 * 1024
#: Characters of an error body quoted to the agent: enough for an API's explanation, never a dump.
ERROR_BODY_LIMIT = 2000


def tool_result(status: int, content_type: str, body: bytes, *, declared_output: bool) -> JsonObject:
    """The tool result of one complete answer (the body already bounded by the caller)."""
    media = content_type.split(";", 1)[0].strip().lower()
    if status >= 400:
        return tool_error(f"The API answered {_status_line(status)}{_quoted_body(media, body, content_type)}")
    if _is_json(media) and body.strip():
        try:
            value = orjson.loads(body)
        except orjson.JSONDecodeError:
            return tool_error(f"The API answered {_status_line(status)} with a body that claims to be JSON but is not.")
        structured = value if isinstance(value, dict) else {"result": value}
        text = orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()
        return {"content": [{"type": "text", "text": _bounded(text, TEXT_LIMIT)}], "structuredContent": structured}
    if declared_output:
        # The tool promised structured output: a client would reject a success without it.
        what = f"a {media} body" if body else "no body"
        return tool_error(
            f"The API answered {_status_line(status)} with {what} where its description promises JSON; "
            "the operation may not have run as described."
        )
    if not body:
        return {"content": [{"type": "text", "text": f"The API answered {_status_line(status)} with no body."}]}
    if media.startswith("image/"):
        return {"content": [{"type": "image", "data": base64.b64encode(body).decode("ascii"), "mimeType": media}]}
    decoded = _decoded(body, content_type)
    if decoded is None:
        described = f"The API answered {_status_line(status)} with {len(body)} bytes of {media or 'binary data'}."
        return {"content": [{"type": "text", "text": described}]}
    text = html_text(decoded) if media == "text/html" else decoded
    return {"content": [{"type": "text", "text": _bounded(text, TEXT_LIMIT)}]}


def tool_error(text: str) -> JsonObject:
    return {"content": [{"type": "text", "text": text}], "isError": True}


def _status_line(status: int) -> str:
    try:
        return f"HTTP {status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"HTTP {status}"


def _quoted_body(media: str, body: bytes, content_type: str) -> str:
    if not body.strip():
        return "."
    text = _decoded(body, content_type)
    if text is None:
        return f" with {len(body)} bytes of {media or 'binary data'}."
    if media == "text/html" or (not media and text.lstrip().startswith("<")):
        text = html_text(text)
    return ": " + _bounded(text.strip(), ERROR_BODY_LIMIT)


def _is_json(media: str) -> bool:
    return media == "application/json" or media.endswith("+json")


def _decoded(body: bytes, content_type: str) -> str | None:
    """The body as text in its declared charset (else UTF-8); None when it is not text."""
    match = re.search(r"charset=([\w.-]+)", content_type, re.IGNORECASE)
    try:
        text = body.decode(match.group(1) if match else "utf-8")
    except (UnicodeDecodeError, LookupError):
        return None
    if "\0" in text:
        return None
    return text


def _bounded(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n[… {len(text) - limit} more characters not shown]"


class _VisibleText(HTMLParser):
    """Collects the text a browser would show: no tags, scripts, styles or comments."""

    _SKIPPED = frozenset({"script", "style", "head", "template", "noscript"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in self._SKIPPED:
            self._skipping += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIPPED and self._skipping:
            self._skipping -= 1

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def html_text(html: str) -> str:
    """An HTML page's visible text, whitespace collapsed."""
    parser = _VisibleText()
    parser.feed(html)
    parser.close()
    return re.sub(r"\s+", " ", " ".join(parser.parts)).strip()
