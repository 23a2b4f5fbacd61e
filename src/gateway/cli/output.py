"""What several commands print the same way: aligned tables, and connector problems.

Tables go to stdout, for people and for `cut`; problems go to stderr, one per line, so a
table piped elsewhere stays a table.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.catalog import Catalog


def printable(text: str) -> str:
    """`text` with control characters escaped (`\\n`, `\\x1b`): what agents and backends wrote
    (notes, summaries, reasons) must not forge lines or send escape sequences to an operator's terminal.
    """
    return text if text.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def print_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[printable(str(cell)) for cell in row] for row in (header, *rows)]
    widths = [max(len(cell) for cell in column) for column in zip(*cells)]
    for row in cells:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


def print_catalog_problems(catalog: Catalog) -> bool:
    """Each connector problem on stderr, one per line; returns whether there were any."""
    problems = catalog.problems()
    for name, found in problems.items():
        for problem in found:
            print(f"gateway: connector '{name}': {problem}", file=sys.stderr)
    return bool(problems)
