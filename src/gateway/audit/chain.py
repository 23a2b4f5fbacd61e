"""The hash chain and checkpoint signatures: how the audit log makes tampering visible.

Every event's `hash` is `sha256(prev_hash || content)`: `prev_hash` is the previous event's
hash as 64 lowercase hex characters (the chain's first event uses 64 zeros), and `content` is
the canonical JSON of the event (keys sorted, no whitespace, UTF-8) exactly as stored. Changing,
removing, adding or moving an event therefore breaks the links after it.

A chain alone cannot show that it was rewritten from scratch, hashes and all, by someone with
write access to the database. Checkpoints close that gap: a checkpoint names (replica, seq,
hash, time) of a chain head, is signed with Ed25519 when a key is configured, and can be
exported and kept elsewhere; a rewritten chain no longer reproduces the exported hash, and a
forged checkpoint has no valid signature.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.errors import InvalidAuditCheckpoints

GENESIS_HASH = "0" * 64

#: Version of the content layout; part of every hashed event so a future layout cannot be
#: confused with this one.
CONTENT_VERSION = 1


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8: one byte string per value, the input of every hash."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def isoformat(moment: datetime) -> str:
    """A timestamp as stored in event content: UTC, microseconds, explicit offset."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def event_content(
    *, replica_id: str, seq: int, kind: str, time: datetime, call_id: str | None, data: dict[str, Any]
) -> bytes:
    """The canonical content of one event; its position (replica, seq) is part of what is hashed."""
    return canonical_json(
        {
            "v": CONTENT_VERSION,
            "replica": replica_id,
            "seq": seq,
            "kind": kind,
            "time": isoformat(time),
            "call_id": call_id,
            "data": data,
        }
    )


def chain_hash(prev_hash: str, content: bytes) -> str:
    """`sha256(prev_hash || content)` as lowercase hex."""
    digest = hashlib.sha256(prev_hash.encode("ascii"))
    digest.update(content)
    return digest.hexdigest()


# -- checkpoint signatures -----------------------------------------------------------------------


def checkpoint_statement(*, replica_id: str, seq: int, hash: str, time: str) -> bytes:
    """The bytes a checkpoint signature covers: the chain head it vouches for, and when."""
    return canonical_json({"replica": replica_id, "seq": seq, "hash": hash, "time": time})


def sign(key: Ed25519PrivateKey, statement: bytes) -> str:
    return base64.b64encode(key.sign(statement)).decode("ascii")


def signature_valid(key: Ed25519PublicKey, statement: bytes, signature: str | None) -> bool:
    if not signature:
        return False
    try:
        key.verify(base64.b64decode(signature, validate=True), statement)
    except (InvalidSignature, ValueError):
        return False
    return True


def key_id(key: Ed25519PublicKey | Ed25519PrivateKey) -> str:
    """A short fingerprint of the public key, so a report can say which key signed."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def load_private_key(path: Path | str) -> Ed25519PrivateKey:
    """An Ed25519 private key from a PEM file (`openssl genpkey -algorithm ed25519`)."""
    data = _read(path, "signing key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as error:
        raise InvalidAuditCheckpoints(f"{path}: not an unencrypted PEM private key: {error}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise InvalidAuditCheckpoints(f"{path}: the signing key must be an Ed25519 key")
    return key


def load_public_key(path: Path | str) -> Ed25519PublicKey:
    """An Ed25519 public key from a PEM file; a private key file is accepted too."""
    data = _read(path, "public key")
    try:
        key: Any = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        try:
            key = serialization.load_pem_private_key(data, password=None).public_key()
        except (ValueError, TypeError, UnsupportedAlgorithm) as error:
            raise InvalidAuditCheckpoints(f"{path}: not a PEM public key: {error}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise InvalidAuditCheckpoints(f"{path}: checkpoints are signed with Ed25519; this is another kind of key")
    return key


def _read(path: Path | str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise InvalidAuditCheckpoints(f"cannot read the {what} {path}: {error.strerror or error}") from None
