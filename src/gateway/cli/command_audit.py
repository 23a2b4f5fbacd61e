"""The audit chain of one command: what an operator changes from the command line is on the record.

A command never writes on the serving gateway's chain (its replica id belongs to that process):
it takes a replica id of its own (`default_replica_id`, host and pid), holds that id's lease
while it writes, and closes its chain when done, so `gateway audit verify` sees one more short,
complete chain for every command that changed something.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.audit import AuditRecorder
    from gateway.settings.audit import AuditSettings
    from gateway.storage.database import Database


@asynccontextmanager
async def command_audit(database: Database, audit: AuditSettings) -> AsyncIterator[AuditRecorder]:
    """A started recorder on the command's own chain, writing only while its lease holds; closed on exit."""
    from gateway.audit import AuditRecorder, Redactor, default_replica_id, load_private_key
    from gateway.audit.leases import ReplicaLease

    recorder = AuditRecorder(
        database,
        Redactor(audit.redaction),
        replica_id=default_replica_id(),
        signing_key=load_private_key(audit.signing_key) if audit.signing_key else None,
        checkpoint_every=audit.checkpoint_every,
        max_batch=audit.max_batch,
        max_wait_ms=audit.max_wait_ms,
        write_timeout=audit.write_timeout,
    )
    lease = ReplicaLease(database, recorder.replica_id, seconds=audit.lease_seconds)
    await lease.acquire()
    try:
        recorder.write_only_while(lambda: lease.valid)
        await recorder.start()
        try:
            yield recorder
        finally:
            await recorder.close()
    finally:
        await lease.release()
