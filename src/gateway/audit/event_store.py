"""What the recorder and its stores agree on: the row a batch is made of, and the store's duties.

The recorder plans rows (hash chain, checkpoints) and a store makes them durable, one
transaction per batch. Every store writes the same table, rows and values, so readers, `verify`
and retention never know which one wrote an event. The stores themselves live in their own
modules (`sqlite_writer`, `postgres_writer`, `sqlalchemy_writer`), and `store_selection` picks
one for a database; this module imports none of them, so each can import it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.audit.chain import GENESIS_HASH

#: Column order of a row tuple, as the recorder builds it and every store inserts it.
COLUMNS: tuple[str, ...] = (
    "replica_id",
    "seq",
    "kind",
    "time",
    "call_id",
    "agent",
    "user_id",
    "tool",
    "workflow_id",
    "decision",
    "outcome",
    "reasoning",
    "prev_hash",
    "hash",
    "content",
)

#: One audit event as a row: values in `COLUMNS` order, `time` a timezone-aware datetime.
Row = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class ChainHead:
    """The last event of one replica's chain, and how many events followed its last checkpoint."""

    seq: int
    hash: str
    since_checkpoint: int

    @classmethod
    def of(cls, head: tuple[int, str] | None, last_checkpoint: int | None) -> ChainHead:
        seq, hash = head if head is not None else (0, GENESIS_HASH)
        return cls(seq, hash, seq - (last_checkpoint or 0))


class EventStore(Protocol):
    """Durable appends to the audit table for one recorder; used by one task at a time."""

    @property
    def connected(self) -> bool:
        """Whether a connection is kept from an earlier operation (and so may have died meanwhile)."""
        ...

    async def load_head(self, replica_id: str) -> ChainHead:
        """Read the chain head; it sees every append that returned or was abandoned before it."""
        ...

    async def append(self, rows: Sequence[Row]) -> None:
        """Insert `rows` in one transaction; returns once it is committed durably, raises if not."""
        ...

    def connection_lost(self, error: BaseException) -> bool:
        """Whether `error` means the kept connection died (worth one retry on a fresh one)."""
        ...

    async def reset(self) -> None:
        """Drop the kept connection after a failure; the next operation opens a new one."""
        ...

    async def close(self) -> None:
        """Release the connection (and thread); nothing is pending when the recorder calls it."""
        ...
