"""Policy files ─► one parsed policy set whose policies carry readable ids and source lines.

A policy's id is its `@id("...")` annotation, or `<file stem>:<n>` for the n-th policy of the
file. Cedar reports parse and validation errors without a position, so this module finds the
line itself: it splits each file into policies (strings and `//` comments respected), then
narrows a parse error down to the first line that reproduces it and a validation error to the
line naming the offending action, attribute or type.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import cedarpy
from cedarpy import pst

from gateway.errors import PolicyLoadError
from gateway.policy.decision import PolicyRef

_NO_ACTION_HINT = (
    " (no action in the current catalog fits this policy's scope: check the names, and note that a group"
    " with no tools listed yet, such as `destructive` when no listed tool is destructive, has no actions)"
)


@dataclass(frozen=True, slots=True)
class PolicyFile:
    path: Path
    text: str


@dataclass(frozen=True, slots=True)
class _Span:
    """Where one policy sits in its file: first line and character range."""

    line: int
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class LoadedPolicies:
    """Every policy of the loaded files, keyed by readable id, in file order."""

    policies: Mapping[str, pst.Template]
    refs: Mapping[str, PolicyRef]
    files: tuple[PolicyFile, ...]
    positions: Mapping[Path, tuple[str, ...]]  # the ids of a file's policies, by position in the file

    def __len__(self) -> int:
        return len(self.policies)

    def without(self, ids: frozenset[str]) -> LoadedPolicies:
        """The same files with the policies `ids` left out (they are not loaded, e.g. while they wait)."""
        if not ids:
            return self
        return dataclasses.replace(
            self,
            policies=MappingProxyType({k: v for k, v in self.policies.items() if k not in ids}),
            refs=MappingProxyType({k: v for k, v in self.refs.items() if k not in ids}),
        )


@dataclass(frozen=True, slots=True)
class ValidationProblem:
    """One validation error as `file:line: policy 'id': problem`, with the policy's id when Cedar names one."""

    policy: str | None
    text: str


def read_policy_files(directory: Path, *, optional: bool = False) -> tuple[PolicyFile, ...]:
    """Every `*.cedar` file in `directory`, in name order; none when an `optional` directory is absent."""
    if not directory.is_dir():
        if optional and not directory.exists():
            return ()
        raise PolicyLoadError(f"{directory}: the {directory.name} policy directory does not exist")
    files = []
    for path in sorted(directory.glob("*.cedar")):
        try:
            files.append(PolicyFile(path, path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as exc:
            raise PolicyLoadError(f"{path}: cannot read: {exc}") from None
    return tuple(files)


def parse_policies(files: Sequence[PolicyFile], *, id_prefix: str = "") -> LoadedPolicies:
    """Parse every file; raises PolicyLoadError naming file and line on the first error.

    `id_prefix` starts the ids given to policies without `@id`, so that two sets loaded side by
    side (access and approval) with files of the same name never share an id.
    """
    policies: dict[str, pst.Template] = {}
    refs: dict[str, PolicyRef] = {}
    positions: dict[Path, tuple[str, ...]] = {}
    for file in files:
        spans = _split(file.text)
        try:
            tree = cedarpy.PolicySet.from_str(file.text).to_pst()
        except ValueError as exc:
            raise PolicyLoadError(_parse_error(file, spans, str(exc))) from None
        if tree.templates:
            first = min(_position(key) for key in tree.templates)
            raise PolicyLoadError(
                f"{file.path}:{_line(spans, first)}: policy templates (?principal/?resource slots) are not used by "
                "the gateway; write the principal or resource out"
            )
        ids = []
        for key, policy in sorted(tree.static_policies.items(), key=lambda item: _position(item[0])):
            position = _position(key)
            line = _line(spans, position)
            readable = policy.annotations.get("id") or f"{id_prefix}{file.path.stem}:{position + 1}"
            if readable in refs:
                other = refs[readable]
                raise PolicyLoadError(
                    f"{file.path}:{line}: policy id '{readable}' is already used by the policy at "
                    f"{other.file}:{other.line}; every policy needs its own @id"
                )
            policies[readable] = dataclasses.replace(policy, id=readable)
            refs[readable] = PolicyRef(
                id=readable,
                effect=policy.effect,
                file=str(file.path),
                line=line,
                annotations=MappingProxyType(dict(policy.annotations)),
            )
            ids.append(readable)
        positions[file.path] = tuple(ids)
    return LoadedPolicies(
        policies=MappingProxyType(policies),
        refs=MappingProxyType(refs),
        files=tuple(files),
        positions=MappingProxyType(positions),
    )


def validation_errors(loaded: LoadedPolicies, schema: cedarpy.Schema) -> list[ValidationProblem]:
    """Every validation error of every file, as `file:line: policy 'id': problem` lines."""
    problems: list[ValidationProblem] = []
    for file in loaded.files:
        try:
            result = cedarpy.validate_policies(file.text, schema, release_gil=True)
        except ValueError as exc:
            problems.append(ValidationProblem(None, f"{file.path}: cannot be validated: {exc}"))
            continue
        if result.validation_passed:
            continue
        spans = _split(file.text)
        ids = loaded.positions.get(file.path, ())
        for error in result.errors:
            message = re.sub(r"^for policy `[^`]*`,\s*", "", error.error)
            if "unable to find an applicable action" in message:
                message += _NO_ACTION_HINT
            position = _position(error.policy_id) if error.policy_id else -1
            if 0 <= position < len(ids):
                line = _token_line(file.text, spans, position, message)
                problems.append(
                    ValidationProblem(ids[position], f"{file.path}:{line}: policy '{ids[position]}': {message}")
                )
            else:
                problems.append(ValidationProblem(None, f"{file.path}: {message}"))
    return list(dict.fromkeys(problems))


def policy_set(policies: Mapping[str, pst.Template]) -> cedarpy.PolicySet:
    """A parsed set of the given policies, keeping their readable ids (Cedar reports these)."""
    return cedarpy.PolicySet.from_pst(
        pst.PolicySet(templates={}, static_policies=dict(policies), template_links=()), release_gil=True
    )


# -- positions -------------------------------------------------------------------------------


def _position(policy_id: str) -> int:
    """Cedar numbers the policies of one parse `policy0`, `policy1`, ... in file order."""
    match = re.fullmatch(r"policy(\d+)", policy_id)
    return int(match.group(1)) if match else -1


def _line(spans: Sequence[_Span], position: int) -> int:
    return spans[position].line if 0 <= position < len(spans) else 1


def _split(text: str) -> list[_Span]:
    """The policies of a file: each runs from its first token to its `;`."""
    spans: list[_Span] = []
    line = 1
    start_line = start = -1
    in_string = False
    index = 0
    length = len(text)
    while index < length:
        char = text[index]
        if in_string:
            if char == "\\" and index + 1 < length:
                line += text[index + 1] == "\n"
                index += 2
                continue
            if char == '"':
                in_string = False
            elif char == "\n":
                line += 1
            index += 1
            continue
        if char == "/" and text.startswith("//", index):
            newline = text.find("\n", index)
            index = length if newline < 0 else newline
            continue
        if char == "\n":
            line += 1
        elif not char.isspace():
            if start < 0:
                start_line, start = line, index
            if char == '"':
                in_string = True
            elif char == ";":
                spans.append(_Span(start_line, start, index + 1))
                start_line = start = -1
        index += 1
    if start >= 0:
        spans.append(_Span(start_line, start, length))
    return spans


def _parse_error(file: PolicyFile, spans: Sequence[_Span], message: str) -> str:
    """`file:line: message` for a file Cedar refuses to parse."""
    hint = " (is the `;` at the end of the policy missing?)" if "end of input" in message else ""
    for span in spans:
        chunk = file.text[span.start : span.end]
        try:
            cedarpy.PolicySet.from_str(chunk)
        except ValueError as exc:
            line = span.line + _failing_line(chunk, str(exc))
            return f"{file.path}:{line}: syntax error: {exc}{hint}"
    return f"{file.path}: syntax error: {message}{hint}"


def _failing_line(chunk: str, message: str) -> int:
    """Offset (from the policy's first line) of the first line at which the parse error appears."""
    lines = chunk.split("\n")
    last = len(lines) - 1
    for count in range(1, len(lines) + 1):
        try:
            cedarpy.PolicySet.from_str("\n".join(lines[:count]))
        except ValueError as exc:
            if str(exc) == message:
                last = count - 1
                break
    token = _token(message)
    if token:
        for offset in range(last, -1, -1):
            if token in lines[offset]:
                return offset
    return last


def _token(message: str) -> str | None:
    """The piece of policy text an error message quotes: `token`, or the word after a final colon."""
    quoted = re.search(r"`([^`]+)`", message)
    if quoted:
        return quoted.group(1)
    match = re.search(r":\s*(@?[\w:]+)\s*$", message)
    return match.group(1) if match else None


def _token_line(text: str, spans: Sequence[_Span], position: int, message: str) -> int:
    """The line of a policy on which a validation error's quoted name appears, else its first line."""
    span = spans[position] if position < len(spans) else None
    if span is None:
        return 1
    lines = text[span.start : span.end].split("\n")
    for quoted in re.findall(r"`([^`]+)`", message):
        if quoted.startswith("Action::") and "context" in message:
            continue  # "attribute `x` in context for Action::..." names the action the policy applies to
        for needle in _needles(quoted):
            for offset, content in enumerate(lines):
                if needle in content:
                    return span.line + offset
    return span.line


def _needles(quoted: str) -> list[str]:
    """What to look for in the policy text for a name quoted in a validation error."""
    needles = [quoted]
    if "::" in quoted:
        needles.append(quoted.rsplit("::", 1)[1])
    if "." in quoted:
        needles.append(quoted.rsplit(".", 1)[1])
    return needles
