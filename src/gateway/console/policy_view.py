"""What the Policies pages show, shaped from the policy engine's values: files, policies and explanations.

The files shown are the texts of the set in force, read when it loaded, so line numbers and
policy anchors always match what decides. A reload that failed leaves that set in force, and so
on the page; the files on disk (which the error names) are the editor's to open. Only while no set
has ever loaded are the files read from disk, marked as not in force.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from markupsafe import Markup

from gateway.console.cedar_html import highlight
from gateway.identity.principal import Principal
from gateway.policy import PolicyRef, PolicyStore
from gateway.policy.explain import Explanation
from gateway.policy.loader import PolicyFile, read_policy_files


def policy_anchor(policy_id: str) -> str:
    """The page anchor of a policy (`#policy-<id>`); an HTML id holds no whitespace, so that becomes `-`."""
    return "policy-" + re.sub(r"\s", "-", policy_id)


@dataclass(frozen=True, slots=True)
class ShownPolicy:
    id: str
    effect: str
    line: int
    reason: str | None
    #: False for a policy left out until the connectors it names list (see `gateway.policy.waiting`).
    in_force: bool = True

    @property
    def anchor(self) -> str:
        return policy_anchor(self.id)


@dataclass(frozen=True, slots=True)
class ShownLine:
    number: int
    html: Markup
    #: The anchors of the policies that start on this line.
    anchors: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ShownFile:
    name: str
    kind: str
    lines: tuple[ShownLine, ...]
    policies: tuple[ShownPolicy, ...]


def shown_files(store: PolicyStore, policy_dir: Path) -> tuple[list[ShownFile], bool]:
    """The policy files to show, and whether they are the set in force (False: read from disk, none loaded).

    Raises PolicyLoadError when no set is in force and the files on disk cannot be read.
    """
    state = store.current
    if state is None:
        files = [
            *(("access", f) for f in read_policy_files(policy_dir / "access", optional=True)),
            *(("approval", f) for f in read_policy_files(policy_dir / "approval", optional=True)),
        ]
        return [_shown(kind, file, policy_dir, ()) for kind, file in files], False
    refs = [*state.loaded.refs.values(), *(state.approval.loaded.refs.values() if state.approval else ())]
    by_file: dict[str, list[ShownPolicy]] = {}
    for ref in refs:
        by_file.setdefault(ref.file, []).append(_policy(ref))
    for waiting in state.waiting:
        shown_waiting = ShownPolicy(waiting.id, waiting.effect, waiting.line, None, in_force=False)
        by_file.setdefault(waiting.file, []).append(shown_waiting)
    sets: list[tuple[str, Iterable[PolicyFile]]] = [("access", state.loaded.files)]
    if state.approval is not None:
        sets.append(("approval", state.approval.loaded.files))
    shown = [_shown(kind, file, policy_dir, by_file.get(str(file.path), ())) for kind, files in sets for file in files]
    return shown, True


def _policy(ref: PolicyRef) -> ShownPolicy:
    return ShownPolicy(ref.id, ref.effect, ref.line, ref.annotations.get("reason"))


def _shown(kind: str, file: PolicyFile, policy_dir: Path, policies: Iterable[ShownPolicy]) -> ShownFile:
    ordered = tuple(sorted(policies, key=lambda policy: policy.line))
    anchors: dict[int, tuple[str, ...]] = {}
    for policy in ordered:
        anchors[policy.line] = (*anchors.get(policy.line, ()), policy.anchor)
    lines = tuple(
        ShownLine(number, html, anchors.get(number, ())) for number, html in enumerate(highlight(file.text), start=1)
    )
    return ShownFile(_display_name(file.path, policy_dir), kind, lines, ordered)


def _display_name(path: Path, policy_dir: Path) -> str:
    try:
        return str(path.relative_to(policy_dir))
    except ValueError:
        return path.name


# -- explain -----------------------------------------------------------------------------------


def split_names(text: str) -> tuple[str, ...]:
    """Comma separated names (roles, scopes) as typed: trimmed, blanks and repeats dropped, order kept."""
    return tuple(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))


def shown_explanation(explanation: Explanation) -> dict[str, Any]:
    """An explanation as the explain page shows it: outcome, reasons, and each policy with its anchor."""
    decision, hold = explanation.decision, explanation.hold
    requirement = hold.requirement if hold is not None and hold.held else None
    return {
        "outcome": explanation.outcome,
        "reason": decision.reason,
        "listed": explanation.listed,
        "invalid_arguments": decision.invalid_arguments,
        "policies": [_policy(ref) for ref in decision.policies],
        "errors": decision.errors,
        "hold": None
        if hold is None
        else {
            "held": hold.held,
            "policies": [_policy(ref) for ref in hold.policies],
            "errors": hold.errors,
            "requirement": requirement,
        },
        "text": explanation.text(),
    }


def cli_command(principal: Principal, tool: str, arguments: Any, reasoning: str | None) -> str:
    """The `gateway policy explain` command that asks the same question, for a shell."""
    words = ["gateway", "policy", "explain", "--agent", principal.agent]
    words += [word for role in principal.roles for word in ("--role", role)]
    words += [word for scope in principal.scopes for word in ("--scope", scope)]
    if principal.user:
        words += ["--user", principal.user]
    words += ["--tool", tool, "--args", json.dumps(arguments, ensure_ascii=False)]
    if reasoning:
        words += ["--reasoning", reasoning]
    return " ".join(shlex.quote(word) for word in words)


def form_text(form: Mapping[str, Any], name: str) -> str:
    """A text field of a submitted form; anything else (a file, nothing) reads as empty."""
    value = form.get(name)
    return value if isinstance(value, str) else ""
