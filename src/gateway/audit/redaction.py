"""Redaction: what the audit log stores never holds a credential, because it is removed first.

Everything an agent sends can carry a secret (a password argument, a token pasted into its
reasoning, a database URL with a password in it), and an audit log keeps what it is given for
years and is read by many people. So the recorder passes every value through a `Redactor`
before it builds an event: values under sensitive key names are replaced whatever they hold,
and strings anywhere are scanned for things that look like credentials. The replacement says
what kind of thing was removed (`[REDACTED:jwt]`) so a reader can still follow the log.

Arguments are stored bounded: at most `max_argument_bytes` of canonical JSON (beyond that a
prefix, with the size and SHA-256 digest of the whole), at most `max_depth` levels deep, at most
`max_nodes` values. The walk is iterative, so a 10,000-level argument cannot exhaust the stack.
The digest is taken over the redacted document, never the original: an unsalted digest of a
small document holding a weak password would let anyone who reads the log test guesses.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.settings.audit import RedactionSettings

REDACTED = "[REDACTED]"


@dataclass(frozen=True, slots=True)
class RedactedArguments:
    """A call's arguments as the audit log keeps them.

    `value` is the redacted document when it fits the size bound; otherwise it is None and
    `preview` holds the first `max_argument_bytes` of its canonical JSON. `size` and `sha256`
    always describe the whole redacted document. `truncated` is true when anything was cut
    (size, depth or number of values).
    """

    value: Any
    preview: str | None
    size: int
    sha256: str
    truncated: bool

    def as_json(self) -> dict[str, Any]:
        """The form stored in the event payload."""
        return {
            "value": self.value,
            "preview": self.preview,
            "bytes": self.size,
            "sha256": self.sha256,
            "truncated": self.truncated,
        }


# -- key names ---------------------------------------------------------------------------------

_WORD_BOUNDARY = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])")


def _words(key: str) -> list[str]:
    return [part.lower() for part in _WORD_BOUNDARY.split(key) if part]


class _KeyMatcher:
    """Decides whether a key name is sensitive, tolerant of case, separators and prefixes.

    A key is split into words (`x-api-key`, `xApiKey` and `X_API_KEY` all give x, api, key).
    A one-word name matches a whole word or the end of the joined key (`token` matches
    `session_token` and `authtoken` but not `max_tokens`); a name of several words matches
    anywhere in the joined key (`api_key` matches `my_api_key_id`).
    """

    _CACHE_LIMIT = 4096

    def __init__(self, names: Iterable[str]) -> None:
        singles: set[str] = set()
        multis: set[str] = set()
        for name in names:
            words = _words(name)
            if len(words) == 1:
                singles.add(words[0])
            elif words:
                multis.add("".join(words))
        self._singles = frozenset(singles)
        self._multis = tuple(sorted(multis))
        self._cache: dict[str, bool] = {}

    def __bool__(self) -> bool:
        return bool(self._singles or self._multis)

    def matches(self, key: str) -> bool:
        known = self._cache.get(key)
        if known is not None:
            return known
        words = _words(key)
        joined = "".join(words)
        found = (
            any(word in self._singles for word in words)
            or any(joined.endswith(name) for name in self._singles)
            or any(name in joined for name in self._multis)
        )
        if len(self._cache) < self._CACHE_LIMIT:
            self._cache[key] = found
        return found


# -- values that look like credentials ---------------------------------------------------------

_NOT_ALNUM_BEFORE = r"(?<![A-Za-z0-9])"


@dataclass(frozen=True, slots=True)
class _Pattern:
    kind: str
    regex: re.Pattern[str]
    needles: tuple[str, ...]
    keep_group: int = 0  # a group kept in front of the replacement (a key name, a URL scheme)


_PATTERNS: tuple[_Pattern, ...] = (
    _Pattern(
        "private_key",
        re.compile(
            r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY[A-Z0-9 ]*-----.*?(?:-----END[A-Z0-9 ]*PRIVATE KEY[A-Z0-9 ]*-----|\Z)",
            re.S,
        ),
        ("PRIVATE KEY",),
    ),
    _Pattern("jwt", re.compile(r"eyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*"), ("eyJ",)),
    _Pattern("bearer", re.compile(r"(?i)(\bbearer\s+)[A-Za-z0-9\-._~+/]{8,}=*"), ("earer", "EARER"), keep_group=1),
    _Pattern("basic", re.compile(r"(\bBasic\s+)[A-Za-z0-9+/]{12,}={0,2}"), ("Basic",), keep_group=1),
    _Pattern(
        "aws_access_key_id", re.compile(_NOT_ALNUM_BEFORE + r"(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Z0-9])"), ("AKIA", "ASIA")
    ),
    _Pattern(
        "aws_secret",
        re.compile(
            r"(?i)(aws[\w-]{0,30}?(?:secret|key)[\w-]{0,30}[\"']?\s{0,3}[:=]\s{0,3}[\"']?)[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+])"
        ),
        ("aws", "AWS", "Aws"),
        keep_group=1,
    ),
    _Pattern(
        "github_token",
        re.compile(_NOT_ALNUM_BEFORE + r"(?:(?:ghp|gho|ghs|ghu|ghr)_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{20,})"),
        ("ghp_", "gho_", "ghs_", "ghu_", "ghr_", "github_pat_"),
    ),
    _Pattern("slack_token", re.compile(_NOT_ALNUM_BEFORE + r"xox[bpoasr]-[A-Za-z0-9-]{8,}"), ("xox",)),
    _Pattern(
        "stripe_key", re.compile(_NOT_ALNUM_BEFORE + r"(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{8,}"), ("k_live_", "k_test_")
    ),
    _Pattern("google_api_key", re.compile(_NOT_ALNUM_BEFORE + r"AIza[0-9A-Za-z_-]{35}"), ("AIza",)),
    _Pattern("openai_key", re.compile(_NOT_ALNUM_BEFORE + r"sk-[A-Za-z0-9_-]{20,}"), ("sk-",)),
    _Pattern(
        "url_password",
        re.compile(r"(?i)(\b[a-z][a-z0-9+.-]{1,20}://[^/\s:@]{0,256}:)[^/\s@]{1,256}(?=@)"),
        ("://",),
        keep_group=1,
    ),
)

#: `name=value` and `"name": "value"` pairs in free text; the name decides (see `_KeyMatcher`).
_KEY_VALUE = re.compile(
    r"(?<![\w-])(?P<key>[A-Za-z_][\w.-]{0,63})(?P<sep>[\"']?\s{0,3}[:=]\s{0,3})"
    r"(?:(?P<quote>[\"'])(?P<quoted>[^\"'\n]{1,4096})(?P=quote)|(?P<value>[^\s\"'&,;}\]<>]{1,4096}))"
)
#: Shorter strings cannot hold any pattern above (the shortest is a `token=x` pair).
_SHORTEST_SECRET = 7
_AWS_SECRET_VALUE = re.compile(r"[A-Za-z0-9/+]{40}")
_NOT_SECRET_VALUES = frozenset({"bearer", "basic", "[redacted"})

#: Limits of what `orjson` (and so the canonical JSON) can represent.
_MIN_INT = -(2**63)
_MAX_INT = 2**64 - 1


def clean_text(text: str) -> str:
    """`text` as valid UTF-8: lone surrogates (from JSON `\\ud800` or bad decoding) become escapes."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


class Redactor:
    """Removes credentials from values and text, as configured by `RedactionSettings`.

    Built once from the settings and shared: it holds compiled patterns and no per-call state.
    """

    def __init__(self, settings: RedactionSettings | None = None) -> None:
        self._settings = settings or RedactionSettings()
        names = (*self._settings.keys, *self._settings.extra_keys)
        self._keys = _KeyMatcher(names)
        # Cheap substring screens run first (`in` is far faster than any regex on long text),
        # so most strings skip the patterns entirely.
        self._key_words = tuple(sorted({tuple(_words(name)) for name in names if _words(name)}))
        self._key_cache: dict[str, str] = {}
        self._tool_rules: dict[str, tuple[_KeyMatcher, tuple[tuple[str, ...], ...]]] = {}
        for tool, rules in self._settings.tools.items():
            key_rules = [rule for rule in rules if not rule.startswith("/")]
            paths = tuple(tuple(rule.strip("/").split("/")) for rule in rules if rule.startswith("/"))
            self._tool_rules[tool] = (_KeyMatcher(key_rules), paths)

    @property
    def settings(self) -> RedactionSettings:
        return self._settings

    # -- text ---------------------------------------------------------------------------------

    def redact_text(self, text: str, *, max_chars: int | None = None) -> str:
        """`text` without anything that looks like a credential, cut to `max_chars` (default from settings).

        For log lines, span attributes, reasoning and error messages. Only a bounded prefix is
        scanned: anything past `max_chars` is dropped anyway, and a credential straddling the
        scanned prefix lies past the cut too.
        """
        limit = self._settings.max_text_chars if max_chars is None else max_chars
        original_length = len(text)
        redacted = self._redact_string(text[: limit + 4096])
        if len(redacted) > limit or original_length > limit + 4096:
            redacted = redacted[:limit] + f"…[TRUNCATED: {original_length} characters]"
        return redacted

    def _redact_string(self, text: str) -> str:
        text = clean_text(text)
        if len(text) < _SHORTEST_SECRET:
            return text
        for pattern in _PATTERNS:
            if any(needle in text for needle in pattern.needles):
                text = pattern.regex.sub(self._replacement(pattern), text)
        if ("=" in text or ":" in text) and self._mentions_key(text):
            text = _KEY_VALUE.sub(self._key_value_replacement, text)
        return text

    def _mentions_key(self, text: str) -> bool:
        lowered = text.lower()
        return any(all(word in lowered for word in words) for words in self._key_words)

    def _redact_key(self, key: Any) -> str:
        text = _as_text(key)
        known = self._key_cache.get(text)
        if known is None:
            known = self._redact_string(text)
            if len(self._key_cache) < 4096:
                self._key_cache[text] = known
        return known

    def _marker(self, kind: str) -> str:
        return f"[REDACTED:{kind}]" if self._settings.label_kinds else REDACTED

    def _replacement(self, pattern: _Pattern) -> Callable[[re.Match[str]], str]:
        marker = self._marker(pattern.kind)
        if pattern.keep_group:
            group = pattern.keep_group
            return lambda match: match.group(group) + marker
        return lambda _match: marker

    def _key_value_replacement(self, match: re.Match[str]) -> str:
        quote = match.group("quote") or ""
        value = match.group("quoted") if quote else match.group("value")
        if value.lower().startswith(tuple(_NOT_SECRET_VALUES)) or not self._keys.matches(match.group("key")):
            return match.group(0)
        return match.group("key") + match.group("sep") + quote + self._marker("key") + quote

    # -- structured values --------------------------------------------------------------------

    def redact_value(self, value: Any, *, tool: str | None = None) -> Any:
        """A JSON-ready copy of `value` with credentials removed, depth and size bounded."""
        return self._redact_tree(value, tool)[0]

    def redact_arguments(self, arguments: Any, *, tool: str | None = None) -> RedactedArguments:
        """Redact a call's arguments and bound what is kept of them (see `RedactedArguments`)."""
        tree, cut = self._redact_tree(arguments, tool)
        canonical = orjson.dumps(tree, option=orjson.OPT_SORT_KEYS)
        size = len(canonical)
        digest = hashlib.sha256(canonical).hexdigest()
        limit = self._settings.max_argument_bytes
        if size <= limit:
            return RedactedArguments(value=tree, preview=None, size=size, sha256=digest, truncated=cut)
        preview = canonical[:limit].decode("utf-8", "ignore")
        return RedactedArguments(value=None, preview=preview, size=size, sha256=digest, truncated=True)

    def _redact_tree(self, value: Any, tool: str | None) -> tuple[Any, bool]:
        """Copy `value` breadth-bounded and depth-bounded, without recursion; return (copy, anything cut)."""
        settings = self._settings
        tool_keys, tool_paths = self._tool_rules.get(tool or "", (None, ()))
        track_paths = bool(tool_paths)
        holder: list[Any] = [None]
        # (node, container it goes into, slot in that container, depth, path of keys)
        stack: list[tuple[Any, Any, Any, int, tuple[str, ...]]] = [(value, holder, 0, 0, ())]
        nodes = 0
        cut = False
        key_marker = self._marker("key")
        while stack:
            node, parent, slot, depth, path = stack.pop()
            nodes += 1
            if nodes > settings.max_nodes:
                parent[slot] = "[TRUNCATED: too many values]"
                cut = True
                continue
            if isinstance(node, Mapping):
                if depth >= settings.max_depth:
                    parent[slot] = "[TRUNCATED: nested too deeply]"
                    cut = True
                    continue
                copy: dict[str, Any] = {}
                parent[slot] = copy
                for raw_key, child in node.items():
                    key = self._redact_key(raw_key)
                    child_path = (*path, key) if track_paths else path
                    if (
                        self._keys.matches(key)
                        or (tool_keys is not None and tool_keys and tool_keys.matches(key))
                        or (track_paths and _path_matches(child_path, tool_paths))
                        or (isinstance(child, str) and "aws" in key.lower() and _AWS_SECRET_VALUE.fullmatch(child))
                    ):
                        copy[key] = key_marker
                        continue
                    copy[key] = None
                    stack.append((child, copy, key, depth + 1, child_path))
            elif isinstance(node, list | tuple | set | frozenset):
                if depth >= settings.max_depth:
                    parent[slot] = "[TRUNCATED: nested too deeply]"
                    cut = True
                    continue
                items = list(node)
                copy_list: list[Any] = [None] * len(items)
                parent[slot] = copy_list
                for index in range(len(items) - 1, -1, -1):
                    child_path = (*path, str(index)) if track_paths else path
                    if track_paths and _path_matches(child_path, tool_paths):
                        copy_list[index] = key_marker
                        continue
                    stack.append((items[index], copy_list, index, depth + 1, child_path))
            else:
                parent[slot] = self._redact_scalar(node)
        return holder[0], cut

    def _redact_scalar(self, node: Any) -> Any:
        if node is None or isinstance(node, bool):
            return node
        if isinstance(node, int):
            return node if _MIN_INT <= node <= _MAX_INT else str(node)
        if isinstance(node, float):
            return node if math.isfinite(node) else str(node)
        if isinstance(node, str):
            return self._redact_string(node)
        if isinstance(node, bytes | bytearray | memoryview):
            data = bytes(node)
            try:
                return self._redact_string(data.decode("utf-8"))
            except UnicodeDecodeError:
                return f"[BINARY: {len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()}]"
        return self._redact_string(str(node))


def _as_text(key: Any) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, bytes | bytearray):
        return bytes(key).decode("utf-8", "backslashreplace")
    return str(key)


def _path_matches(path: tuple[str, ...], rules: tuple[tuple[str, ...], ...]) -> bool:
    for rule in rules:
        if len(rule) == len(path) and all(step in ("*", part) for step, part in zip(rule, path)):
            return True
    return False
