"""Verification: recompute every chain and name the first entry that is not what was written.

Each replica's chain is read in `seq` order, a page at a time (memory stays flat however long
the log). For every event the hash is recomputed from its stored content and previous hash,
its position and indexed columns are checked against the hashed content, and its link to the
event before it is checked. The first failure in a chain is named with what most plausibly
happened:

- `changed`: an event's content (or an indexed copy of it) no longer matches its hash, or an
  event was edited and its hash recomputed, so the next event's link no longer matches it;
- `deleted`: a `seq` is missing, the chain's start is gone without a checkpoint anchoring the
  new start, or later events were renumbered to close a gap;
- `inserted`: an event sits between two events that link to each other directly;
- `reordered`: an event holds the content written for another position in the chain;
- `rewritten`: the chain is consistent but no longer reproduces an exported checkpoint;
- `bad_signature`: a checkpoint (stored or exported) is unsigned or its signature does not verify.

A chain may start after `seq` 1 only at a checkpoint that names the hash its first event links
to: that is what `prune` leaves behind.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import select

from gateway.audit.chain import GENESIS_HASH, chain_hash, checkpoint_statement, key_id, signature_valid
from gateway.audit.checkpoints import Checkpoint
from gateway.audit.entry import CHECKPOINT, index_columns
from gateway.storage.database import Database
from gateway.storage.tables import AuditEventRow

ProblemKind = Literal["changed", "deleted", "inserted", "reordered", "rewritten", "bad_signature"]

_PAGE = 1000


@dataclass(frozen=True, slots=True)
class Problem:
    """The first thing found wrong in one chain (or with one exported checkpoint)."""

    replica_id: str
    seq: int | None
    kind: ProblemKind
    detail: str

    def __str__(self) -> str:
        where = f"replica {self.replica_id}" + (f" seq {self.seq}" if self.seq is not None else "")
        return f"{where}: {self.kind}: {self.detail}"

    def to_json(self) -> dict[str, Any]:
        return {"replica": self.replica_id, "seq": self.seq, "kind": self.kind, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class ReplicaSummary:
    """What verification saw of one replica's chain."""

    replica_id: str
    first_seq: int | None
    last_seq: int | None
    events: int
    checkpoints: int

    def to_json(self) -> dict[str, Any]:
        return {
            "replica": self.replica_id,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "events": self.events,
            "checkpoints": self.checkpoints,
        }


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """The outcome of `verify`: intact when `problems` is empty."""

    problems: tuple[Problem, ...]
    replicas: tuple[ReplicaSummary, ...]
    checkpoints_checked: int
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_problem(self) -> Problem | None:
        return self.problems[0] if self.problems else None

    @property
    def events(self) -> int:
        return sum(replica.events for replica in self.replicas)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "events": self.events,
            "checkpoints_checked": self.checkpoints_checked,
            "problems": [problem.to_json() for problem in self.problems],
            "replicas": [replica.to_json() for replica in self.replicas],
            "notes": list(self.notes),
        }


async def verify(
    db: Database,
    *,
    checkpoints: Sequence[Checkpoint] | None = None,
    public_key: Ed25519PublicKey | None = None,
) -> VerifyReport:
    """Recompute every replica's chain; check exported `checkpoints` and signatures with `public_key`."""
    table = AuditEventRow.__table__
    async with db.session() as session:
        replicas = sorted((await session.execute(select(table.c.replica_id).distinct())).scalars())
    exported: dict[str, list[Checkpoint]] = defaultdict(list)
    for checkpoint in checkpoints or ():
        exported[checkpoint.replica_id].append(checkpoint)
    problems: list[Problem] = []
    summaries: list[ReplicaSummary] = []
    notes: list[str] = []
    checked = 0
    if public_key is None:
        notes.append("no public key given: checkpoint signatures were not checked")
    for replica_id in replicas:
        wanted = {checkpoint.seq for checkpoint in exported.get(replica_id, ())}
        chain = _ChainCheck(db, replica_id, public_key, wanted)
        await chain.run()
        if chain.problem is not None:
            problems.append(chain.problem)
        summaries.append(chain.summary())
        replica_problems, replica_notes, replica_checked = _check_exported(
            chain, exported.pop(replica_id, []), public_key
        )
        problems.extend(replica_problems)
        notes.extend(replica_notes)
        checked += replica_checked
    for replica_id, missing in sorted(exported.items()):
        last = max(missing, key=lambda checkpoint: checkpoint.seq)
        problems.append(
            Problem(
                replica_id,
                last.seq,
                "deleted",
                f"the log holds no events of this replica, but an exported checkpoint of {last.time} "
                f"vouches for {last.seq} of them",
            )
        )
        checked += len(missing)
    return VerifyReport(tuple(problems), tuple(summaries), checked, tuple(notes))


@dataclass(slots=True)
class _ChainCheck:
    db: Database
    replica_id: str
    public_key: Ed25519PublicKey | None
    wanted: set[int]
    problem: Problem | None = None
    first_seq: int | None = None
    last_seq: int | None = None
    anchor_hash: str | None = None
    events: int = 0
    checkpoints: int = 0
    recomputed: dict[int, str] = field(default_factory=dict)
    _expected_seq: int = 0
    _expected_prev: str = GENESIS_HASH
    _previous_hashes: tuple[str | None, str | None] = (None, None)  # stored hashes of the last two rows

    def summary(self) -> ReplicaSummary:
        return ReplicaSummary(self.replica_id, self.first_seq, self.last_seq, self.events, self.checkpoints)

    async def run(self) -> None:
        table = AuditEventRow.__table__
        after = 0
        while True:
            async with self.db.session() as session:
                page = (
                    await session.execute(
                        select(table)
                        .where(table.c.replica_id == self.replica_id, table.c.seq > after)
                        .order_by(table.c.seq)
                        .limit(_PAGE)
                    )
                ).all()
            for row in page:
                await self._check(row)
            if len(page) < _PAGE:
                return
            after = page[-1].seq

    async def _check(self, row: Any) -> None:
        self.events += 1
        self.last_seq = row.seq
        own_hash = chain_hash(row.prev_hash, row.content.encode("utf-8"))
        if row.seq in self.wanted:
            self.recomputed[row.seq] = own_hash
        if row.kind == CHECKPOINT:
            self.checkpoints += 1
        if self.problem is not None:
            return
        content = _parse(row.content)
        if self.first_seq is None:
            self.first_seq = row.seq
            if not self._start(row, content):
                return
        self.problem = await self._fault(row, content, own_hash)
        if self.problem is None and row.kind == CHECKPOINT and content is not None:
            self.problem = self._checkpoint_fault(row, content)
        self._previous_hashes = (self._previous_hashes[1], row.hash)
        self._expected_seq = row.seq + 1
        self._expected_prev = row.hash

    def _start(self, row: Any, content: dict[str, Any] | None) -> bool:
        if row.seq == 1:
            self._expected_seq, self._expected_prev = 1, GENESIS_HASH
            return True
        data = content.get("data") if content else None
        anchored = (
            row.kind == CHECKPOINT
            and isinstance(data, dict)
            and data.get("seq") == row.seq - 1
            and data.get("hash") == row.prev_hash
        )
        if not anchored:
            self.problem = Problem(
                self.replica_id,
                row.seq - 1,
                "deleted",
                f"the chain starts at seq {row.seq}: events 1 to {row.seq - 1} are missing and no checkpoint "
                "anchors the new start (prune always keeps one)",
            )
            return False
        self.anchor_hash = row.prev_hash
        self._expected_seq, self._expected_prev = row.seq, row.prev_hash
        return True

    async def _fault(self, row: Any, content: dict[str, Any] | None, own_hash: str) -> Problem | None:
        seq = row.seq
        if seq > self._expected_seq:
            missing = f"seq {self._expected_seq}" + (f" to {seq - 1}" if seq - 1 > self._expected_seq else "")
            return Problem(
                self.replica_id, self._expected_seq, "deleted", f"{missing} missing: the chain jumps to {seq}"
            )
        if content is None:
            return Problem(self.replica_id, seq, "changed", "the stored content is not valid JSON")
        content_seq = content.get("seq")
        link_ok = row.prev_hash == self._expected_prev
        if not link_ok and row.prev_hash == self._previous_hashes[0] and self._previous_hashes[0] is not None:
            return Problem(
                self.replica_id,
                seq - 1,
                "inserted",
                f"seq {seq - 1} is not part of the chain: seq {seq} links directly to seq {seq - 2}",
            )
        if content_seq != seq or content.get("replica") != self.replica_id:
            if content.get("replica") != self.replica_id:
                return Problem(
                    self.replica_id, seq, "inserted", f"holds an event written by replica {content.get('replica')!r}"
                )
            if isinstance(content_seq, int) and await self._content_elsewhere(seq):
                return Problem(
                    self.replica_id,
                    seq,
                    "reordered",
                    f"holds the event written as seq {content_seq}; the event written as seq {seq} sits elsewhere",
                )
            if isinstance(content_seq, int) and content_seq > seq:
                return Problem(
                    self.replica_id,
                    seq,
                    "deleted",
                    f"holds the event written as seq {content_seq}: events were removed and later ones renumbered",
                )
            return Problem(self.replica_id, seq, "inserted", f"holds an event written as seq {content_seq}")
        if own_hash != row.hash:
            return Problem(self.replica_id, seq, "changed", "the content no longer matches the event's hash")
        mismatch = _column_mismatch(row, content)
        if mismatch:
            return Problem(self.replica_id, seq, "changed", mismatch)
        if not link_ok:
            return Problem(
                self.replica_id,
                seq - 1,
                "changed",
                f"seq {seq - 1} was altered and its hash recomputed: seq {seq} links to a different hash",
            )
        return None

    def _checkpoint_fault(self, row: Any, content: dict[str, Any]) -> Problem | None:
        data = content.get("data") or {}
        if data.get("seq") != row.seq - 1 or data.get("hash") != row.prev_hash:
            return Problem(self.replica_id, row.seq, "changed", "the checkpoint does not name the event before it")
        if self.public_key is None:
            return None
        statement = checkpoint_statement(
            replica_id=self.replica_id, seq=data["seq"], hash=data["hash"], time=content.get("time", "")
        )
        if not signature_valid(self.public_key, statement, data.get("signature")):
            why = "is not signed" if not data.get("signature") else "has a signature that does not verify"
            signer = f" (signed by key {data.get('key_id')}, expected {key_id(self.public_key)})"
            return Problem(
                self.replica_id,
                row.seq,
                "bad_signature",
                f"the checkpoint {why}{signer if data.get('key_id') else ''}",
            )
        return None

    async def _content_elsewhere(self, seq: int) -> bool:
        """Whether some row of this replica holds the content written for `seq` (a move, not a loss)."""
        table = AuditEventRow.__table__
        after = 0
        while True:
            async with self.db.session() as session:
                page = (
                    await session.execute(
                        select(table.c.seq, table.c.content)
                        .where(table.c.replica_id == self.replica_id, table.c.seq > after)
                        .order_by(table.c.seq)
                        .limit(_PAGE)
                    )
                ).all()
            for row in page:
                parsed = _parse(row.content)
                if row.seq != seq and parsed is not None and parsed.get("seq") == seq:
                    return True
            if len(page) < _PAGE:
                return False
            after = page[-1].seq


def _check_exported(
    chain: _ChainCheck, checkpoints: list[Checkpoint], public_key: Ed25519PublicKey | None
) -> tuple[list[Problem], list[str], int]:
    problems: list[Problem] = []
    notes: list[str] = []
    last_match: int | None = None
    rewritten = False
    for checkpoint in sorted(checkpoints, key=lambda item: item.seq):
        where = f"exported checkpoint of {checkpoint.time}"
        if public_key is not None and not signature_valid(public_key, checkpoint.statement(), checkpoint.signature):
            problems.append(
                Problem(
                    chain.replica_id,
                    checkpoint.seq,
                    "bad_signature",
                    f"the {where} is unsigned or its signature does not verify: it was forged or altered",
                )
            )
            continue
        if chain.first_seq is None or chain.last_seq is None:
            continue
        if checkpoint.seq < chain.first_seq - 1:
            notes.append(f"replica {chain.replica_id}: {where} covers seq {checkpoint.seq}, which was pruned")
            continue
        if checkpoint.seq > chain.last_seq:
            problems.append(
                Problem(
                    chain.replica_id,
                    chain.last_seq + 1,
                    "deleted",
                    f"the chain ends at seq {chain.last_seq}, but the {where} vouches for events up to seq "
                    f"{checkpoint.seq}: the newest events were removed",
                )
            )
            break
        actual = chain.anchor_hash if checkpoint.seq == chain.first_seq - 1 else chain.recomputed.get(checkpoint.seq)
        if actual is None:
            continue  # that seq is missing; the chain check names it
        if actual == checkpoint.hash:
            last_match = checkpoint.seq
        elif not rewritten:
            rewritten = True
            since = f"after seq {last_match}" if last_match is not None else "from its start"
            problems.append(
                Problem(
                    chain.replica_id,
                    checkpoint.seq,
                    "rewritten",
                    f"the chain up to seq {checkpoint.seq} no longer reproduces the hash in the {where}: "
                    f"it was rewritten {since}",
                )
            )
    return problems, notes, len(checkpoints)


def _parse(content: str) -> dict[str, Any] | None:
    try:
        parsed = orjson.loads(content)
    except orjson.JSONDecodeError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _column_mismatch(row: Any, content: dict[str, Any]) -> str | None:
    """Name the first indexed column that disagrees with the hashed content, if any."""
    if row.kind != content.get("kind"):
        return f"column kind is {row.kind!r} but the hashed content says {content.get('kind')!r}"
    if row.call_id != content.get("call_id"):
        return f"column call_id is {row.call_id!r} but the hashed content says {content.get('call_id')!r}"
    try:
        written = datetime.fromisoformat(content.get("time", ""))
    except (TypeError, ValueError):
        return "the hashed content has no valid time"
    if row.time != written:
        return f"column time is {row.time.isoformat()} but the hashed content says {written.isoformat()}"
    data = content.get("data")
    expected = index_columns(row.kind, data if isinstance(data, dict) else {})
    for name, value in expected.items():
        if getattr(row, name) != value:
            return f"column {name} is {getattr(row, name)!r} but the hashed content says {value!r}"
    return None
