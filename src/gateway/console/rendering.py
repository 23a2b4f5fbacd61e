"""Server-rendered pages: one Jinja2 environment, autoescaped, with the filters every page shares.

Every page renders whole on the server, so the console reads and decides with JavaScript off;
the script in `static/console.js` only makes it live (server-sent events, keyboard shortcuts).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from gateway import __version__
from gateway.console.access import Permission, Visitor
from gateway.console.security import CSRF_FIELD

#: The sections of the console, in the order the navigation shows them.
SECTIONS = (
    ("overview", "Overview", "/ui/"),
    ("approvals", "Approvals", "/ui/approvals"),
    ("activity", "Activity", "/ui/activity"),
    ("workflows", "Workflows", "/ui/workflows"),
    ("agents", "Agents", "/ui/agents"),
    ("policies", "Policies", "/ui/policies"),
    ("connectors", "Connectors", "/ui/connectors"),
    ("audit", "Audit", "/ui/audit"),
)

_environment = Environment(
    loader=PackageLoader("gateway.console", "templates"),
    autoescape=select_autoescape(("html",)),
    trim_blocks=True,
    lstrip_blocks=True,
)


def _when(moment: datetime | str | None) -> str:
    """A moment as people read it in the console: UTC, to the second."""
    if moment is None:
        return "-"
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _ago(moment: datetime | None, now: datetime | None = None) -> str:
    if moment is None:
        return "never"
    seconds = int(((now or datetime.now(UTC)) - moment).total_seconds())
    if seconds < 0:
        return _left(-seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def _left(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds <= 0:
        return "expired"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s"


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


_environment.filters.update(when=_when, ago=_ago, left=_left, pretty=_pretty)
_environment.globals.update(SECTIONS=SECTIONS, VERSION=__version__, Permission=Permission, CSRF_FIELD=CSRF_FIELD)


def render(
    request: Request,
    template: str,
    context: dict[str, Any],
    *,
    visitor: Visitor | None = None,
    section: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    """The page `template` for `visitor` (None on the sign-in pages), in the console's layout."""
    page = _environment.get_template(template)
    html = page.render(request=request, visitor=visitor, section=section, now=datetime.now(UTC), **context)
    return HTMLResponse(html, status_code=status_code)
