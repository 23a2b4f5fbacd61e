"""Where a key is written in a TOML file, so that a message about it can name the line to edit.

`tomllib` keeps no positions, so the line is found again in the text: good enough for the files
people write by hand, and only ever used to point at a problem, never to read a value.
"""

from __future__ import annotations

import re


def line_of(text: str, path: tuple[str | int, ...]) -> int:
    """Best-effort line number of a key path in TOML text: the key's line after its table header."""
    keys = [str(part) for part in path if isinstance(part, str)]
    if not keys:
        return 1
    lines = text.splitlines()
    start = 0
    # The path names a table of its own, e.g. [tools.update_record]: its header is the line.
    whole = _table_header(keys)
    for number, line in enumerate(lines):
        if whole.match(line):
            return number + 1
    # Find the deepest table header that is a prefix of the path, e.g. [tools.update_record].
    for depth in range(len(keys) - 1, 0, -1):
        header = _table_header(keys[:depth])
        for number, line in enumerate(lines):
            if header.match(line):
                start = number
                break
        else:
            continue
        break
    for key in reversed(keys):
        quoted = r"""["']?""" + re.escape(key) + r"""["']?\s*="""
        key_line = re.compile(r"^\s*" + quoted + r"|[{,]\s*" + quoted)
        for number in range(start, len(lines)):
            if key_line.search(lines[number]):
                return number + 1
    header = re.compile(r"^\s*\[+\s*" + re.escape(keys[-1]) + r"\s*\]+")
    for number, line in enumerate(lines):
        if header.match(line):
            return number + 1
    # A table written only through its sub-tables, e.g. [console] as [console.oidc]: the first of them.
    inner = re.compile(_table_header(keys).pattern.removesuffix(r"\s*\]+") + r"\s*\.")
    for number, line in enumerate(lines):
        if inner.match(line):
            return number + 1
    return start + 1


def _table_header(keys: list[str]) -> re.Pattern[str]:
    """`[a.b]`, `[[a.b]]` or `[a."b.c"]`: a table header naming exactly these keys."""
    quoted = (r"""(?:["']?""" + re.escape(key) + r"""["']?)""" for key in keys)
    return re.compile(r"^\s*\[+\s*" + r"\s*\.\s*".join(quoted) + r"\s*\]+")
