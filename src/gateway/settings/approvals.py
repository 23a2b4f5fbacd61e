"""Held calls: gateway.toml's `[approvals]` table."""

from __future__ import annotations

from pydantic import Field, SecretStr

from gateway.settings.base import SettingsModel


class SealingKey(SettingsModel):
    """One key that encrypts held calls' exact arguments at rest; give it from the environment."""

    id: str = Field(description="A short name for the key (letters, digits, `_.-`), stored with what it sealed.")
    key: SecretStr = Field(
        description='32 random bytes, base64 (e.g. `openssl rand -base64 32`); write `key = "${GATEWAY_APPROVAL_KEY}"`.'
    )


class ApprovalSettings(SettingsModel):
    """How a call that approval policies hold waits for people, and how its arguments are kept meanwhile."""

    sealing_keys: tuple[SealingKey, ...] = Field(
        default=(),
        description=(
            "Keys for the exact arguments of held calls; the first seals, all open, so a new key can be put first. "
            "Without one, a call an approval policy holds is refused (nothing runs unapproved)."
        ),
    )
    max_wait: float = Field(
        default=60.0,
        ge=0,
        description=(
            "Seconds a held call keeps its request open waiting for the decision (with progress notifications "
            "when the agent asked for them); after that the agent is told the call is pending and how to collect it."
        ),
    )
    poll_interval: float = Field(
        default=2.0,
        gt=0,
        description=(
            "Seconds between looks at a waiting approval's state in the database, the fallback behind the signal "
            "that wakes a waiting call the moment its approval changes in any process: it finds a decision whose "
            "signal was lost, or one made by `gateway approvals` on SQLite, where signals stay in their process."
        ),
    )
    collect_within: float = Field(
        default=3600.0,
        gt=0,
        description=(
            "Seconds after its approval that an approved call waits for its agent to repeat it (and so run it); "
            "past that it expires unrun, its sealed arguments are dropped, and a repeat hears why."
        ),
    )
    progress_interval: float = Field(
        default=10.0, gt=0, description="Seconds between progress notifications to an agent waiting for a decision."
    )
    sweep_interval: float = Field(
        default=5.0, gt=0, description="Seconds between checks for approvals that expired or are due to escalate."
    )
    sweep_lease_seconds: float = Field(
        default=15.0,
        gt=0,
        description=(
            "Only one gateway process on a database sweeps (the holder of the `approvals-sweeper` lease, renewed "
            "while it runs); when that process dies, another takes the sweeps over within this many seconds."
        ),
    )
    describe_in_listing: bool = Field(
        default=True,
        description=(
            "Say in `tools/list` that a tool's calls may wait for approval (added to its description), "
            "so a model can plan for it; `false` lists tools exactly as their backends describe them."
        ),
    )
    task_poll_interval: float = Field(
        default=5.0,
        gt=0,
        description=(
            "Seconds a client that takes tasks (the 2026-07-28 tasks extension) is asked to wait between "
            "`tasks/get` polls of a held call (`pollIntervalMs`)."
        ),
    )
    max_result_bytes: int = Field(
        default=65536,
        ge=1024,
        description="Largest backend result kept for an agent that collects an approved call's outcome later.",
    )
