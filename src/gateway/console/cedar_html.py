"""Cedar policy text as escaped, highlighted HTML lines, made on the server.

Pygments has no Cedar lexer and a browser-side highlighter would need a script per page, so this
is a small tokenizer of its own: comments, strings, annotations, keywords, entity types, numbers
and function calls get a `<span class="tok-...">`; everything else is plain text. It only colours:
it never rejects text, so a file Cedar refuses still shows as written, and every piece of text is
escaped before it is wrapped, so a policy file can never put markup on the page.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from markupsafe import Markup, escape

KEYWORDS = frozenset(
    {
        "permit",
        "forbid",
        "when",
        "unless",
        "principal",
        "action",
        "resource",
        "context",
        "in",
        "has",
        "like",
        "is",
        "if",
        "then",
        "else",
    }
)
LITERALS = frozenset({"true", "false"})

_TOKEN = re.compile(
    r"""
      (?P<comment>//[^\n]*)
    | (?P<string>"(?:[^"\\]|\\.)*"?)
    | (?P<annotation>@[A-Za-z_][A-Za-z0-9_]*)
    | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<number>[0-9]+)
    | (?P<space>\s+)
    | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)


def tokens(text: str) -> list[tuple[str | None, str]]:
    """`(class, text)` pieces of `text` in order, class None for plain text; joined, they are `text`."""
    raw = [(match.lastgroup or "other", match.group()) for match in _TOKEN.finditer(text)]
    pieces: list[tuple[str | None, str]] = []
    previous_word: str | None = None
    for index, (kind, piece) in enumerate(raw):
        css: str | None = None
        if kind in ("comment", "string", "annotation", "number"):
            css = f"tok-{kind}"
        elif kind == "word":
            css = _word_class(piece, previous_word, _next_significant(raw, index))
        pieces.append((css, piece))
        if kind not in ("space", "comment"):
            previous_word = piece if kind == "word" else None
    return pieces


def highlight(text: str) -> list[Markup]:
    """The lines of `text` as safe HTML, one per line (a final newline does not start another line)."""
    lines: list[Markup] = []
    current: list[str] = []
    for css, piece in tokens(text):
        parts = piece.split("\n")
        for number, part in enumerate(parts):
            if number:
                lines.append(Markup("".join(current)))
                current = []
            if part:
                escaped = str(escape(part))
                current.append(f'<span class="{css}">{escaped}</span>' if css else escaped)
    if current or not text.endswith("\n"):
        lines.append(Markup("".join(current)))
    return lines


def _word_class(word: str, previous_word: str | None, following: str | None) -> str | None:
    if word in LITERALS:
        return "tok-literal"
    if following == "::" or previous_word == "is":
        return "tok-type"  # `Action::"x"`, `Role::"sales"`, `principal is Agent`
    if word in KEYWORDS:
        return "tok-keyword"
    if following == "(":
        return "tok-function"  # `decimal("1.0")`, `.greaterThan(...)`
    return None


def _next_significant(raw: Sequence[tuple[str, str]], index: int) -> str | None:
    """The next non-space text after `raw[index]`: `::` when two colons follow, else one token."""
    for position in range(index + 1, len(raw)):
        kind, piece = raw[position]
        if kind == "space":
            continue
        if piece == ":" and position + 1 < len(raw) and raw[position + 1][1] == ":":
            return "::"
        return piece
    return None
