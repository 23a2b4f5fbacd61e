"""Where keys, the audit log and backends' last listings are kept: gateway.toml's `[storage]` table."""

from __future__ import annotations

from pydantic import Field

from gateway.settings.base import SettingsModel


class StorageSettings(SettingsModel):
    url: str = Field(
        default="sqlite+aiosqlite:///gateway.db",
        description=(
            "The database: `sqlite:///<file>` (relative to this file) for one process, "
            "`postgresql://user:password@host/db` for several workers or replicas."
        ),
    )
