"""Checkpoints taken out of the database: exported to a file that is kept somewhere else.

A checkpoint event vouches for its chain's head at one moment (see `gateway.audit.chain`).
Inside the database it protects nothing against someone who can rewrite the database; a copy
kept elsewhere (a ticket, object storage with retention, a colleague's mailbox) does, because
verification then checks the chain against hashes that person cannot reach.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import select

from gateway.audit.atomic_file import write_atomically
from gateway.audit.chain import checkpoint_statement, isoformat
from gateway.audit.entry import CHECKPOINT
from gateway.errors import InvalidAuditCheckpoints
from gateway.storage.database import Database
from gateway.storage.tables import AuditEventRow

FILE_FORMAT = "autonomy-gateway/audit-checkpoints"
FILE_VERSION = 1


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signed statement that `replica_id`'s event `seq` had hash `hash` at `time`.

    `event_seq` is where the checkpoint itself sits in the chain (always `seq + 1`).
    """

    replica_id: str
    seq: int
    hash: str
    time: str
    signature: str | None
    key_id: str | None
    event_seq: int

    def statement(self) -> bytes:
        """The bytes the signature covers."""
        return checkpoint_statement(replica_id=self.replica_id, seq=self.seq, hash=self.hash, time=self.time)

    def to_json(self) -> dict[str, Any]:
        return {
            "replica": self.replica_id,
            "seq": self.seq,
            "hash": self.hash,
            "time": self.time,
            "signature": self.signature,
            "key_id": self.key_id,
            "event_seq": self.event_seq,
        }

    @classmethod
    def from_json(cls, value: Any) -> Checkpoint:
        if not isinstance(value, dict):
            raise InvalidAuditCheckpoints("each checkpoint must be a JSON object")
        try:
            checkpoint = cls(
                replica_id=value["replica"],
                seq=value["seq"],
                hash=value["hash"],
                time=value["time"],
                signature=value.get("signature"),
                key_id=value.get("key_id"),
                event_seq=value.get("event_seq", value["seq"] + 1),
            )
        except (KeyError, TypeError) as error:
            raise InvalidAuditCheckpoints(f"a checkpoint lacks a field or has a wrong type: {error}") from None
        if not (
            isinstance(checkpoint.replica_id, str)
            and isinstance(checkpoint.seq, int)
            and isinstance(checkpoint.hash, str)
            and isinstance(checkpoint.time, str)
            and isinstance(checkpoint.event_seq, int)
        ):
            raise InvalidAuditCheckpoints(f"a checkpoint has a field of the wrong type: {value!r}")
        return checkpoint


async def read_checkpoints(db: Database, *, replica_id: str | None = None) -> list[Checkpoint]:
    """Every checkpoint stored in the log (or one replica's), oldest first per replica."""
    table = AuditEventRow.__table__
    query = select(table.c.seq, table.c.content).where(table.c.kind == CHECKPOINT)
    if replica_id is not None:
        query = query.where(table.c.replica_id == replica_id)
    checkpoints: list[Checkpoint] = []
    async with db.session() as session:
        rows = await session.execute(query.order_by(table.c.replica_id, table.c.seq))
        for row in rows:
            content = orjson.loads(row.content)
            data = content["data"]
            checkpoints.append(
                Checkpoint(
                    replica_id=content["replica"],
                    seq=data["seq"],
                    hash=data["hash"],
                    time=content["time"],
                    signature=data.get("signature"),
                    key_id=data.get("key_id"),
                    event_seq=row.seq,
                )
            )
    return checkpoints


async def export_checkpoints(db: Database, out_path: Path | str, *, replica_id: str | None = None) -> int:
    """Write the log's checkpoints to `out_path` as JSON (atomically); return how many."""
    checkpoints = await read_checkpoints(db, replica_id=replica_id)
    document = {
        "format": FILE_FORMAT,
        "version": FILE_VERSION,
        "exported_at": isoformat(datetime.now(UTC)),
        "checkpoints": [checkpoint.to_json() for checkpoint in checkpoints],
    }
    body = orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
    write_atomically(Path(out_path), [body])
    return len(checkpoints)


def load_checkpoints(path: Path | str) -> list[Checkpoint]:
    """Read a file written by `export_checkpoints` (a bare JSON list of checkpoints is accepted too)."""
    try:
        document = orjson.loads(Path(path).read_bytes())
    except OSError as error:
        raise InvalidAuditCheckpoints(f"cannot read {path}: {error.strerror or error}") from None
    except orjson.JSONDecodeError as error:
        raise InvalidAuditCheckpoints(f"{path} is not JSON: {error}") from None
    items: Iterable[Any]
    if isinstance(document, dict):
        if document.get("format") != FILE_FORMAT:
            raise InvalidAuditCheckpoints(f"{path} is not an audit checkpoint file (format {FILE_FORMAT!r} expected)")
        items = document.get("checkpoints", [])
    elif isinstance(document, list):
        items = document
    else:
        raise InvalidAuditCheckpoints(f"{path} holds neither a checkpoint file nor a list of checkpoints")
    return [Checkpoint.from_json(item) for item in items]
