"""Counting agents' recent calls for `context.rate`: gateway.toml's `[rates]` table."""

from __future__ import annotations

from pydantic import Field

from gateway.settings.base import SettingsModel


class RateSettings(SettingsModel):
    """How often the gateway processes sharing a database exchange their counts of agents' calls."""

    sync_interval: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description=(
            "Seconds between writes of this process's call counts to the database and reads of the other "
            "processes'. A call made on one replica is counted on the others within two intervals, so replicas "
            "enforce a rate policy together give or take the calls of the last two intervals."
        ),
    )
