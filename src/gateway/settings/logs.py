"""The gateway's own log on stderr: gateway.toml's `[logging]` table."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from gateway.settings.base import SettingsModel


class LoggingSettings(SettingsModel):
    level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="Least severe level written to stderr."
    )
    format: Literal["json", "text"] | None = Field(
        default=None,
        description=(
            "How log lines on stderr look: `json` (one object per line with `trace_id` and `span_id`, for log "
            "collectors) or `text` (time, level, message and fields, for people). Unset: text when stderr is a "
            "terminal, JSON otherwise."
        ),
    )
