"""The Cedar access policies: gateway.toml's `[policies]` table."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from gateway.settings.base import SettingsModel


class PoliciesSettings(SettingsModel):
    """Where the Cedar policies live (`access/`, `approval/`, `tests/`) and how often to look for edits."""

    dir: Path = Field(
        default=Path("policies"), description="Directory holding `access/*.cedar`, `approval/*.cedar` and `tests/`."
    )
    reload_interval: float = Field(
        default=1.0, gt=0, description="Seconds between checks for added, removed or changed policy files."
    )
