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


def print_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    for row in (header, *rows):
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())


def print_catalog_problems(catalog: Catalog) -> bool:
    """Each connector problem on stderr, one per line; returns whether there were any."""
    problems = catalog.problems()
    for name, found in problems.items():
        for problem in found:
            print(f"gateway: connector '{name}': {problem}", file=sys.stderr)
    return bool(problems)
