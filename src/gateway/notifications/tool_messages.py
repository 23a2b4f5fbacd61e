"""What a webhook receives when a pinned tool is quarantined: which tool, what changed, and what to do.

A quarantine needs a person, like a held call: an admin must read the diff and accept the new
definition, or have the backend put the old one back. The message says so; it carries the
digests and the instruction flags, not the definitions themselves (they may be long, and the
diff is read with `gateway tools diff` or on the console's connectors page).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from gateway.settings.notifications import WebhookEvent


@dataclass(frozen=True, slots=True)
class ToolNotice:
    """One quarantined tool, as every webhook hears of it."""

    connector: str
    tool: str
    exposed: str
    accepted_digest: str | None
    current_digest: str
    flags: tuple[str, ...]
    occurred_at: datetime

    @property
    def subject(self) -> str:
        return self.exposed


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def tool_facts(notice: ToolNotice, event: WebhookEvent, *, console_url: str | None) -> dict[str, Any]:
    link = f"{console_url.rstrip('/')}/ui/connectors#{notice.connector}" if console_url else None
    return {
        "event": event,
        "occurred_at": notice.occurred_at.isoformat(),
        "tool": {
            "connector": notice.connector,
            "name": notice.tool,
            "exposed": notice.exposed,
            "accepted_digest": notice.accepted_digest,
            "current_digest": notice.current_digest,
            "flags": list(notice.flags),
            "link": link,
            "what_to_do": (
                f"review the change with `gateway tools diff {notice.exposed}` and accept it with "
                f"`gateway tools accept {notice.exposed} --reason ...`, or restore the backend's previous definition"
            ),
        },
    }


def tool_json_body(notice: ToolNotice, event: WebhookEvent, *, console_url: str | None) -> bytes:
    return orjson.dumps(tool_facts(notice, event, console_url=console_url))


def tool_slack_body(notice: ToolNotice, event: WebhookEvent, *, console_url: str | None) -> bytes:
    facts = tool_facts(notice, event, console_url=console_url)["tool"]
    text = (
        f"Tool quarantined: `{_escape(notice.exposed)}` on `{_escape(notice.connector)}` changed its definition "
        "since it was accepted; agents cannot see or call it until an admin reviews it"
    )
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": "Tool quarantined"}},
        {"type": "section", "text": {"type": "mrkdwn", "text": text}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": _escape(facts["what_to_do"])}]},
    ]
    flags: Sequence[str] = notice.flags
    if flags:
        listed = "\n".join(f"• {_escape(flag)}" for flag in flags[:10])
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"*Flags*\n{listed}"}]})
    if facts["link"]:
        text += f" <{facts['link']}|review>"
    return orjson.dumps({"text": text, "blocks": blocks})
