"""What the Activity and Audit pages search for, read from the query string as `gateway audit search` reads options.

The same filters, the same time forms (an ISO 8601 time, UTC unless a zone is given, or a
duration ago such as `15m`) and the same kinds, so a search moves between the console and a
shell unchanged. A value a person mistyped becomes a sentence on the page, never an error page:
`Search.problems` lists them, and the page shows the form again with what they typed.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from gateway.audit.entry import APPROVAL, AUTH_REFUSED, CALL, CONSOLE, OUTCOMES, RECOVERED, AuditCall
from gateway.audit.query import MAX_LIMIT, SearchFilters, SearchPage, parse_time, search
from gateway.errors import InvalidAuditQuery
from gateway.storage.database import Database

#: What a person picks, and the events it finds (as `gateway audit search --kind`).
KINDS: dict[str, tuple[str, str]] = {
    "call": (CALL, "Calls, with their outcomes"),
    "auth": (AUTH_REFUSED, "Refused authentications"),
    "approval": (APPROVAL, "Approval events"),
    "console": (CONSOLE, "Console events"),
    "recovered": (RECOVERED, "Calls closed after a crash"),
}
#: The decisions recorded on calls: a policy's, or the refusal that came before any decision.
DECISIONS = ("allow", "deny", "hold", "refused", "invalid_arguments")
#: Call filters by their field name in the form, as `gateway audit search` names its options.
CALL_FIELDS = ("agent", "user", "tool", "decision", "outcome", "workflow", "text")
TIME_FIELDS = ("since", "until")
#: Calls a page examines at most when a filter is checked row by row (decision, outcome, text): a
#: value that matches nothing costs one window of the log, and "Older" looks further back.
SCAN_LIMIT = 10_000
_TIME_HELP = "use an ISO 8601 time (2026-12-01T10:00Z; UTC unless a zone is given) or a duration ago (15m, 12h, 7d)"
_LABELS = {"agent": "Agent", "user": "User", "tool": "Tool", "decision": "Decision", "outcome": "Outcome"}
_LABELS |= {"workflow": "Workflow", "text": "Reasoning text"}


@dataclass(frozen=True, slots=True)
class Search:
    """One search as typed (`form`, to fill the form again and build links) and as understood."""

    form: dict[str, str]
    kind: str
    filters: SearchFilters
    limit: int
    cursor: str | None
    problems: tuple[str, ...]
    #: The moments `since` and `until` were read as, to show what a duration meant.
    resolved: dict[str, datetime]

    @property
    def calls(self) -> bool:
        return self.kind == "call"

    @property
    def event_kind(self) -> str:
        return KINDS[self.kind][0]

    def command(self) -> str:
        """The same search from a shell, quoted for it."""
        words = ["gateway", "audit", "search"]
        for name, value in self.form.items():
            if name != "cursor" and not (name == "kind" and value == "call"):
                words += [f"--{name}", shlex.quote(value)]
        return " ".join(words)

    def query(self, **changes: str | None) -> str:
        """This search's query string with `changes` (None removes a field), empty fields left out."""
        values = {**self.form, **changes}
        return urlencode({name: value for name, value in values.items() if value})


def read_search(
    params: Mapping[str, str], *, fields: tuple[str, ...], now: datetime | None = None, default_limit: int = 50
) -> Search:
    """The search `params` ask for, reading only `fields` (the ones the page's form offers)."""
    form = {name: params.get(name, "").strip() for name in fields if params.get(name, "").strip()}
    problems: list[str] = []
    kind = form.get("kind", "call")
    if kind not in KINDS:
        problems.append(f"“{kind}” is not a kind of event: choose one of {', '.join(KINDS)}.")
        kind = "call"
    values = {name: form.get(name) for name in CALL_FIELDS}
    if values["outcome"] is not None and values["outcome"] not in OUTCOMES:
        problems.append(f"“{values['outcome']}” is not an outcome: choose one of {', '.join(sorted(OUTCOMES))}.")
    if kind != "call":
        given = [_LABELS[name] for name in CALL_FIELDS if values[name] is not None]
        if given:
            several = len(given) > 1
            problems.append(
                f"{', '.join(given)} {'filter' if several else 'filters'} calls only: clear "
                f"{'them' if several else 'it'} to search {KINDS[kind][1].lower()}, or search calls."
            )
    moment = now or datetime.now(UTC)
    resolved: dict[str, datetime] = {}
    for name in TIME_FIELDS:
        if name in form:
            try:
                resolved[name] = parse_time(form[name], now=moment)
            except InvalidAuditQuery:
                problems.append(f"{name.capitalize()}: “{form[name]}” is not a time: {_TIME_HELP}.")
    since, until = resolved.get("since"), resolved.get("until")
    if since is not None and until is not None and since >= until:
        problems.append("Since is not before until, so nothing can match: swap them or widen the range.")
    limit = default_limit
    if "limit" in form:
        try:
            limit = int(form["limit"])
        except ValueError:
            limit = 0
        if not 1 <= limit <= MAX_LIMIT:
            problems.append(f"Show: “{form['limit']}” is not a number from 1 to {MAX_LIMIT}.")
            limit = default_limit
    filters = SearchFilters(
        agent=values["agent"],
        user=values["user"],
        tool=values["tool"],
        decision=values["decision"],
        outcome=values["outcome"],
        since=since,
        until=until,
        workflow=values["workflow"],
        text_in_reasoning=values["text"],
    )
    return Search(form, kind, filters, limit, form.get("cursor"), tuple(problems), resolved)


async def find_calls(db: Database, wanted: Search, *, limit: int, cursor: str | None) -> SearchPage:
    """The calls `wanted` selects, a page of `limit` after `cursor`, examining at most `SCAN_LIMIT` calls."""
    # `SearchFilters` names its fields as `search` names its filters.
    return await search(db, **asdict(wanted.filters), limit=limit, cursor=cursor, scan_limit=SCAN_LIMIT)


def call_row(call: AuditCall) -> dict[str, Any]:
    """A call as one line of a list: who, for whom, what, the decision, how long and how it ended."""
    latency = (call.outcome or {}).get("latency_ms") or {}
    total = latency.get("total")
    return {
        "call_id": call.call_id,
        "time": call.time,
        "agent": call.agent,
        "user": call.call.get("user"),
        "tool": call.tool or call.call.get("method"),
        "decision": call.decision,
        "total_ms": float(total) if isinstance(total, int | float) else None,
        "outcome": call.outcome_name,
    }
