"""A sliding count of events over the last N slots (seconds or minutes), kept in a ring of buckets.

Counting a call must cost a few hundred nanoseconds, whatever the rate: a list of timestamps per
agent grows with the traffic and must be trimmed on every call. A ring holds one count per slot
(a second for the last minute, a minute for the last hour) and a running total; moving to a new
slot clears only the buckets that fell out of the window. The window is therefore exact to the
slot: "the last minute" is the current second and the 59 before it.

Slots are absolute (seconds or minutes since the epoch), so the counts of several processes add
up bucket by bucket. Each ring keeps this process's own counts (`local`, what it writes to the
database) apart from the sum of the other processes' (`remote`, what it last read there).
"""

from __future__ import annotations

from collections.abc import Iterable

#: The head of a ring that never counted anything: every slot is newer than it by more than a window.
_NEVER = -(2**62)


class SlidingCount:
    """Events in the last `size` slots, this process's and the others'; see the module docstring."""

    __slots__ = ("_head", "_local", "_local_total", "_remote", "_remote_total", "_size")

    def __init__(self, size: int) -> None:
        if size <= 0:
            raise ValueError("a sliding count needs at least one slot")
        self._size = size
        self._local = [0] * size
        self._remote = [0] * size
        self._local_total = 0
        self._remote_total = 0
        self._head = _NEVER

    @property
    def total(self) -> int:
        """Events in the window ending at the newest slot seen, every process's."""
        return self._local_total + self._remote_total

    @property
    def local_total(self) -> int:
        return self._local_total

    @property
    def head(self) -> int:
        """The newest slot seen (`advance`d to or counted in)."""
        return self._head

    def advance(self, slot: int) -> None:
        """Move the window's end to `slot`, clearing the buckets that fell out; an older slot changes nothing."""
        head = self._head
        if slot <= head:
            return
        size = self._size
        if slot - head >= size:
            self._local = [0] * size
            self._remote = [0] * size
            self._local_total = self._remote_total = 0
        else:
            local, remote = self._local, self._remote
            for passed in range(head + 1, slot + 1):
                index = passed % size
                self._local_total -= local[index]
                self._remote_total -= remote[index]
                local[index] = remote[index] = 0
        self._head = slot

    def add(self, slot: int, count: int = 1) -> int:
        """Count `count` events of this process at `slot`; returns the total after them.

        A slot older than the newest one (the clock stepped back) counts in the newest bucket, so
        an event is never dropped nor counted outside the window.
        """
        self.advance(slot)
        self._local[self._head % self._size] += count
        self._local_total += count
        return self._local_total + self._remote_total

    def local_counts(self) -> list[tuple[int, int]]:
        """This process's non-zero buckets in the window, as (slot, count), oldest first."""
        size, local, head = self._size, self._local, self._head
        if head == _NEVER:
            return []
        return [(slot, local[slot % size]) for slot in range(head - size + 1, head + 1) if local[slot % size]]

    def restore(self, counts: Iterable[tuple[int, int]], slot: int) -> None:
        """Add (slot, count) pairs this process counted before (its own rows at start), within the window."""
        self.advance(slot)
        for when, count in self._in_window(counts):
            self._local[when % self._size] += count
            self._local_total += count

    def set_remote(self, counts: Iterable[tuple[int, int]], slot: int) -> None:
        """Replace the other processes' part by (slot, count) pairs (summed by the caller), within the window.

        A slot newer than `slot` (another host's clock runs ahead) counts in the newest bucket.
        """
        self.advance(slot)
        remote = [0] * self._size
        total = 0
        for when, count in self._in_window(counts):
            remote[when % self._size] += count
            total += count
        self._remote, self._remote_total = remote, total

    def expired(self, slot: int) -> bool:
        """Whether every bucket is out of the window ending at `slot` (nothing would be counted there)."""
        return slot - self._head >= self._size

    def _in_window(self, counts: Iterable[tuple[int, int]]) -> Iterable[tuple[int, int]]:
        head = self._head
        oldest = head - self._size + 1
        for when, count in counts:
            if when >= oldest and count > 0:
                yield min(when, head), count
