"""Short values sealed into URL-safe text that only this gateway's processes can open.

A sealed session id and the console's sign-in cookie both carry a little state through a client
that must neither read nor alter it: a JSON list, encrypted and authenticated with AES-GCM under
a key derived from a shared secret (`[server] session_keys`), so every worker and replica opens
what any of them sealed. The first key seals; all of them open, so keys can be rotated. Without a
secret the key is made for this process alone.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Sequence
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_NONCE_BYTES = 12


class SealedText:
    """Seals a list of JSON values as `<prefix><base64url>` and opens it again.

    `key_context` separates the keys of different uses of one secret; `associated_data` binds a
    sealed value to its use, so one kind cannot be passed off as another; text longer than
    `max_chars` is refused before any decoding.
    """

    def __init__(
        self, secrets: Sequence[str], *, key_context: bytes, associated_data: bytes, prefix: str, max_chars: int
    ) -> None:
        keys = [hashlib.sha256(key_context + secret.encode()).digest() for secret in secrets]
        #: True when no secret was given: what this process seals, no other can open.
        self.process_local = not keys
        self._keys = [AESGCM(key) for key in keys] if keys else [AESGCM(os.urandom(32))]
        self._associated_data = associated_data
        self._prefix = prefix
        self._max_chars = max_chars

    def seal(self, values: Sequence[Any]) -> str:
        payload = json.dumps(list(values), separators=(",", ":")).encode()
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._keys[0].encrypt(nonce, payload, self._associated_data)
        return self._prefix + base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode("ascii")

    def open(self, text: str | None) -> list[Any] | None:
        """The values `text` holds; None when it is absent, altered, too long or sealed with another key."""
        if text is None or not text.startswith(self._prefix) or len(text) > self._max_chars:
            return None
        encoded = text[len(self._prefix) :]
        try:
            raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        except ValueError:
            return None
        nonce, sealed = raw[:_NONCE_BYTES], raw[_NONCE_BYTES:]
        for key in self._keys:
            try:
                values = json.loads(key.decrypt(nonce, sealed, self._associated_data))
            except (InvalidTag, ValueError):
                continue
            return values if isinstance(values, list) else None
        return None
