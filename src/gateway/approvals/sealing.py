"""The exact arguments of a held call, encrypted at rest until the call runs or can no longer run.

People see redacted arguments; the call, once approved, must run with exactly what the agent
sent, credentials included. Those are kept sealed with AES-256-GCM so a copy of the database (a
backup, a replica, a support dump) does not hold them in clear. The approval's id is the
associated data: a sealed blob moved onto another approval's row does not open.

Keys rotate: the first key seals, every key opens, so a new key goes first and the old one stays
listed until the approvals it sealed have ended. A sealed blob is

    b"\\x01" | len(key id) (1 byte) | key id (ASCII) | nonce (12 bytes) | ciphertext and tag

and the plaintext is the arguments as JSON (`json.dumps`, ASCII-escaped), which gives back the
same value, large integers and floats included.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from collections.abc import Sequence
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.errors import ConfigError, SealedArgumentsUnreadable

_FORMAT = 1
_NONCE_BYTES = 12
_KEY_BYTES = 32
_KEY_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")


class Sealer:
    """Seals with the first of `keys`, opens with whichever one a blob names.

    `keys` are `(key id, key)` pairs, the key being 32 bytes in standard or URL-safe base64.
    """

    def __init__(self, keys: Sequence[tuple[str, str]]) -> None:
        if not keys:
            raise ConfigError("sealing the arguments of held calls needs at least one key")
        self._keys: dict[str, AESGCM] = {}
        for key_id, encoded in keys:
            if not _KEY_ID.fullmatch(key_id):
                raise ConfigError(f"sealing key id {key_id!r} must be 1-64 characters of letters, digits and '_.-'")
            if key_id in self._keys:
                raise ConfigError(f"sealing key id {key_id!r} is listed twice")
            self._keys[key_id] = AESGCM(_decode_key(key_id, encoded))
        self._current = keys[0][0]

    @property
    def current_key_id(self) -> str:
        return self._current

    def seal(self, approval_id: str, arguments: Any) -> bytes:
        plaintext = json.dumps(arguments, ensure_ascii=True, separators=(",", ":")).encode("ascii")
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._keys[self._current].encrypt(nonce, plaintext, approval_id.encode())
        key_id = self._current.encode("ascii")
        return bytes([_FORMAT, len(key_id)]) + key_id + nonce + sealed

    def open(self, approval_id: str, blob: bytes) -> Any:
        """The arguments sealed for `approval_id`; `SealedArgumentsUnreadable` if no key here opens them."""
        if len(blob) < 2 or blob[0] != _FORMAT:
            raise SealedArgumentsUnreadable(f"the sealed arguments of approval {approval_id} are in an unknown format")
        end = 2 + blob[1]
        key_id = blob[2:end].decode("ascii", "replace")
        key = self._keys.get(key_id)
        if key is None:
            raise SealedArgumentsUnreadable(
                f"the arguments of approval {approval_id} were sealed with key {key_id!r}, which is not configured; "
                "add it back to the sealing keys (after the current one) until such approvals have ended"
            )
        nonce, sealed = blob[end : end + _NONCE_BYTES], blob[end + _NONCE_BYTES :]
        try:
            plaintext = key.decrypt(nonce, sealed, approval_id.encode())
        except InvalidTag:
            raise SealedArgumentsUnreadable(
                f"the sealed arguments of approval {approval_id} do not open with key {key_id!r}: "
                "the key was changed under the same id, or the stored data was altered"
            ) from None
        return json.loads(plaintext)


def _decode_key(key_id: str, encoded: str) -> bytes:
    text = encoded.strip()
    try:
        key = base64.b64decode(text.replace("-", "+").replace("_", "/") + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"sealing key {key_id!r} is not valid base64") from None
    if len(key) != _KEY_BYTES:
        raise ConfigError(
            f"sealing key {key_id!r} is {len(key)} bytes; it must be {_KEY_BYTES} random bytes in base64 "
            "(e.g. `openssl rand -base64 32`)"
        )
    return key
