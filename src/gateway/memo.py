"""Bounded memories of answers worked out before, for hot paths that see the same few values.

A client sends the same headers, `_meta` and reasons on every call, so what was worked out for
them once (a header's verdict, a schema's reading, a redaction) is kept by value. An odd value
must not grow the memory without bound: a full memory starts over, and the values that keep
coming back are in it again after one more call each.
"""

from __future__ import annotations

from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


def remember(memory: dict[K, V], key: K, value: V, *, limit: int) -> V:
    """Keep `value` under `key` in `memory`, emptied first when it holds `limit` entries; returns `value`."""
    if len(memory) >= limit:
        memory.clear()
    memory[key] = value
    return value
