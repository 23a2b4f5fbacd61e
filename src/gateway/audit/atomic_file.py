"""Files that appear under their final name only once complete.

An export or a checkpoint file is evidence; a half-written one passed off as whole would be
worse than none. Content goes to a hidden temporary file in the same directory, is flushed to
disk, and is then renamed over the final name (an atomic step on POSIX and Windows). On any
failure or cancellation the temporary file is removed and the final name is left untouched.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from gateway.errors import AuditExportFailed


@contextlib.contextmanager
def atomic_output(path: Path) -> Iterator[BinaryIO]:
    """A binary file to write; it becomes `path` when the block ends without an exception."""
    directory = path.parent if str(path.parent) else Path(".")
    try:
        handle, temporary = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".partial")
    except OSError as error:
        raise AuditExportFailed(f"cannot write to {directory}: {error.strerror or error}") from None
    stream = os.fdopen(handle, "wb")
    try:
        yield stream
        stream.flush()
        os.fsync(stream.fileno())
        stream.close()
        os.replace(temporary, path)
    except BaseException as error:
        stream.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        if isinstance(error, OSError):
            raise AuditExportFailed(f"cannot write {path}: {error.strerror or error}") from None
        raise
    _sync_directory(directory)


def write_atomically(path: Path, chunks: Iterable[bytes]) -> None:
    """Write `chunks` to `path` atomically (see `atomic_output`)."""
    with atomic_output(path) as stream:
        for chunk in chunks:
            stream.write(chunk)


def _sync_directory(directory: Path) -> None:
    # Make the rename itself durable; not possible (nor needed) on every platform.
    with contextlib.suppress(OSError):
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
