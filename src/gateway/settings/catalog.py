"""Pinned tool definitions: gateway.toml's `[catalog]` table."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from gateway.settings.base import SettingsModel

NewToolsPolicy = Literal["accept", "review"]


class CatalogSettings(SettingsModel):
    """What the gateway does with a tool it has never accepted, and how fast it hears of reviews.

    Every tool's definition (description, schemas, annotations, title) is pinned once accepted; a
    backend that later lists a different definition has the tool quarantined until an admin
    accepts the change. `accept` (the default) pins a new tool on first sight, so a fresh gateway
    serves its backends at once and every later change is still caught; `review` withholds new
    tools until an admin accepts them (`gateway tools accept`), for teams that vet every tool.
    """

    new_tools: NewToolsPolicy = Field(
        default="accept",
        description=(
            "`accept`: a tool never seen before is pinned on first sight and served; `review`: it is withheld "
            "until an admin accepts it. A connector file's `new_tools` overrides it."
        ),
    )
    hold_flagged: bool = Field(
        default=False,
        description=(
            "Hold a new tool whose description reads like instructions to the model (see the README) for "
            'review, even under `new_tools = "accept"`. Flags alone never quarantine an accepted tool.'
        ),
    )
    review_poll_seconds: float = Field(
        default=5.0,
        gt=0,
        description=(
            "Seconds between each process's reads of the pins and reviews, so an acceptance made elsewhere "
            "(the CLI, another replica) is served without a signal."
        ),
    )
