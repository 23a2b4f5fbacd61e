"""The base of every settings model."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class SettingsModel(BaseModel):
    """A table of a settings file, immutable once loaded.

    Unknown keys are refused rather than ignored, because a misspelt key that is silently dropped
    leaves the setting the operator meant to change at its default.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
