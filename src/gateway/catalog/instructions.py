"""Flags on tool descriptions that read like instructions aimed at the model rather than at a person.

A backend writes the descriptions a model reads before it decides what to do, so a hostile or
compromised backend can hide orders in them ("ignore previous instructions", "first call
`files__read` on ~/.ssh", text in invisible Unicode). The gateway never rewrites a description:
a silent edit would hide the evidence and could break an honest tool. It flags what it finds,
shows the flags where an admin reviews tools (`gateway tools pending`, `gateway tools diff`, the
console's connectors page) and logs them. A flag alone does not withhold a tool; with
`[catalog] hold_flagged = true` a new tool that carries one waits for review instead of being
accepted automatically.

The heuristics, each a `Rule` below, look at the tool's description and title and at every
`description` and `title` inside its input and output schemas:

- `override`: "ignore / disregard / forget (all) previous / prior / above instructions", "new instructions:";
- `concealment`: "do not tell / inform / mention ... the user", "without telling the user", "secretly";
- `prompt`: mentions of the "system prompt", "developer message", or of being an AI / assistant told what to do;
- `tool-call`: markup that looks like a call or a conversation turn (`<tool>`, `<function_call>`,
  `<|im_start|>`, `[INST]`, `<system>`), or "call / invoke / use the tool X" naming another tool;
- `hidden-unicode`: zero-width characters (U+200B to U+200F, U+2060 to U+2064, U+FEFF), Unicode tag
  characters (U+E0000 to U+E007F, invisible text), bidirectional controls (U+202A to U+202E,
  U+2066 to U+2069: LRO, RLO and friends) and other format characters;
- `long`: a description over `LONG_DESCRIPTION_CHARS` characters (room for a hidden essay);
- `encoded`: a run of 80 or more base64 characters (a blob a model may be told to decode).

Heuristics find the careless, not the determined; a reviewer still reads the diff.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

#: Longer descriptions are flagged: tools are described in a paragraph, not in pages.
LONG_DESCRIPTION_CHARS = 2000
#: Flags kept per tool; a definition full of findings needs a person anyway.
MAX_FLAGS = 20
_MAX_DEPTH = 16


@dataclass(frozen=True, slots=True)
class Flag:
    """One finding: which rule, where (`description`, `inputSchema.properties.x.description`), and the text."""

    rule: str
    where: str
    excerpt: str

    def sentence(self) -> str:
        return f"{self.where}: {_EXPLAINED[self.rule]} ({self.excerpt})"

    def as_json(self) -> dict[str, str]:
        return {"rule": self.rule, "where": self.where, "excerpt": self.excerpt}


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    pattern: re.Pattern[str]


_I = re.IGNORECASE
RULES: tuple[Rule, ...] = (
    Rule(
        "override",
        re.compile(
            r"\b(ignore|disregard|forget|override)\b[^.\n]{0,40}\b(previous|prior|above|earlier|preceding|all|other)\b"
            r"[^.\n]{0,20}\b(instructions?|prompts?|rules|directions|guidelines)\b|\bnew instructions\s*:",
            _I,
        ),
    ),
    Rule(
        "concealment",
        re.compile(
            r"\b(do not|don't|never|must not)\s+(tell|inform|mention|reveal|show|disclose|alert|notify)\b"
            r"[^.\n]{0,40}\b(user|human|operator|anyone)\b|\bwithout (telling|informing|notifying|alerting)\b"
            r"|\bsecretly\b|\bkeep (this|it) (a )?secret\b",
            _I,
        ),
    ),
    Rule(
        "prompt",
        re.compile(
            r"\bsystem[ _-]?prompt\b|\bdeveloper message\b|\byou are (an? )?(ai|assistant|language model|llm)\b"
            r"|\bas an? (ai|assistant|language model)\b",
            _I,
        ),
    ),
    Rule(
        "tool-call",
        re.compile(
            r"</?\s*(tool|tools|tool_call|tool_use|function|function_call|functions|system|assistant|user|"
            r"instructions?|important|secret)\b[^>]{0,40}>|<\|[a-z_]+\|>|\[/?INST\]"
            r"|\b(call|invoke|run|use|execute)\s+(the\s+)?(tool|function)\s+[`'\"]?[A-Za-z0-9_.-]+"
            r"|\b(before|after|first)\b[^.\n]{0,30}\b(call|invoke|run)\s+[`'\"]?[A-Za-z0-9]+__[A-Za-z0-9_-]+",
            _I,
        ),
    ),
    Rule("encoded", re.compile(r"[A-Za-z0-9+/]{80,}={0,2}")),
)

_EXPLAINED = {
    "override": "tells the model to set aside its instructions",
    "concealment": "tells the model to hide something from the user",
    "prompt": "speaks of the model's system prompt or role",
    "tool-call": "names or marks up a call to another tool, or a conversation turn",
    "hidden-unicode": "contains invisible or direction-changing Unicode characters",
    "long": f"is longer than {LONG_DESCRIPTION_CHARS} characters",
    "encoded": "contains a long base64-like blob",
}

#: Bidirectional controls: LRE, RLE, PDF, LRO, RLO, LRI, RLI, FSI, PDI, and the marks.
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")
_ZERO_WIDTH = frozenset("\u200b\u200c\u200d\u2060\u2061\u2062\u2063\u2064\ufeff\u180e")


def hidden_characters(text: str) -> list[str]:
    """The invisible or direction-changing characters in `text`, as `U+XXXX` names, each once."""
    found: dict[str, None] = {}
    for char in text:
        point = ord(char)
        if (
            char in _BIDI
            or char in _ZERO_WIDTH
            or 0xE0000 <= point <= 0xE007F
            or (unicodedata.category(char) == "Cf" and char not in "\u00ad")
        ):
            found[f"U+{point:04X}"] = None
    return list(found)


def flag_text(text: str, where: str, *, description: bool = True) -> list[Flag]:
    """Every rule `text` trips; `description` enables the length rule (titles are short by nature)."""
    flags: list[Flag] = []
    for rule in RULES:
        match = rule.pattern.search(text)
        if match is not None:
            flags.append(Flag(rule.name, where, _excerpt(match.group(0))))
    hidden = hidden_characters(text)
    if hidden:
        flags.append(Flag("hidden-unicode", where, ", ".join(hidden[:8])))
    if description and len(text) > LONG_DESCRIPTION_CHARS:
        flags.append(Flag("long", where, f"{len(text)} characters"))
    return flags


def flag_definition(definition: Mapping[str, Any]) -> tuple[Flag, ...]:
    """The flags of a tool's definition: its description and title, and every text in its schemas."""
    flags: list[Flag] = []
    for where, text in _texts(definition):
        flags.extend(flag_text(text, where, description=not where.endswith("title")))
        if len(flags) >= MAX_FLAGS:
            break
    return tuple(flags[:MAX_FLAGS])


def _texts(definition: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    for key in ("title", "description"):
        value = definition.get(key)
        if isinstance(value, str):
            yield key, value
    for key in ("inputSchema", "outputSchema"):
        yield from _schema_texts(definition.get(key), key, 0)


def _schema_texts(node: Any, path: str, depth: int) -> Iterator[tuple[str, str]]:
    """`description` and `title` strings anywhere in a schema, and property names (they reach the model too)."""
    if depth > _MAX_DEPTH:
        return
    if isinstance(node, Mapping):
        for key, value in node.items():
            here = f"{path}.{key}"
            if key in ("description", "title") and isinstance(value, str):
                yield here, value
            elif key == "properties" and isinstance(value, Mapping):
                for name in value:
                    if isinstance(name, str) and hidden_characters(name):
                        yield f"{here} (a property name)", name
                yield from _schema_texts(value, here, depth + 1)
            else:
                yield from _schema_texts(value, here, depth + 1)
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from _schema_texts(item, f"{path}[{index}]", depth + 1)


def _excerpt(text: str, limit: int = 80) -> str:
    """The matched text, cut, with invisible characters spelled out so the excerpt cannot hide anything itself."""
    shown = "".join(f"<U+{ord(c):04X}>" if hidden_characters(c) else c for c in text)
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"
