"""Asking agents why they call a tool: gateway.toml's `[reasoning]` table."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from gateway.settings.base import SettingsModel

ReasoningMode = Literal["off", "optional", "required"]


class ReasoningSettings(SettingsModel):
    """Asking agents why they call a tool, without changing the agent.

    `optional` adds a `parameter` to every tool's input schema whose description asks the model
    for its reasoning; `required` also refuses calls without it. The gateway takes the value out
    of the arguments before the backend sees them. Connector files and `[tools.<name>]` tables
    may override the mode.
    """

    mode: ReasoningMode = Field(
        default="off",
        description=(
            "`off`; `optional` adds a reasoning parameter to every tool's input schema; `required` also refuses "
            "calls without it."
        ),
    )
    parameter: str = Field(
        default="reasoning",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$",
        description="Name of the added parameter; taken out of the arguments before the backend sees them.",
    )
    description: str = Field(
        default=(
            "Why you are calling this tool now: the goal it serves and what you expect it to do. "
            "Recorded in the audit log and checked by policy; it is not passed to the tool."
        ),
        description="The added parameter's description: what the model reads when it decides what to write.",
    )
