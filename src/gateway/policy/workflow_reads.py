"""Which policies read what a workflow did (`context.workflow.completed`, `.agents`), found once at load.

Knowing it lets a call skip the database: the pipeline reads a workflow's state only for an
action some applicable policy reads it for, and a call to any other action costs nothing more.

It also tells the pipeline which tools must count in `completed` on every replica as soon as
their result reaches the agent: the names policies compare `completed` with. For those the
audit outcome is committed before the answer is sent (one more group commit); every other call
keeps its outcome riding along with the next commit. A policy that reads `completed` any other
way (compared with an argument, as a whole) makes every tool count at once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cedarpy import pst

_STATE_ATTRIBUTES = frozenset({"completed", "agents"})
_SET_TESTS = frozenset({"contains", "contains_all", "contains_any"})


@dataclass(frozen=True, slots=True)
class WorkflowReads:
    """What one set of policies reads of workflows.

    `readers`: ids of the policies that read `completed` or `agents` (or `context.workflow`, or
    `context`, whole). `completed_names`: the tool names compared with `completed`; None when
    some policy reads it in a way that could mean any tool.
    """

    readers: frozenset[str] = frozenset()
    completed_names: frozenset[str] | None = frozenset()

    def tracks(self, tool: str) -> bool:
        names = self.completed_names
        return names is None or tool in names

    def merged(self, other: WorkflowReads) -> WorkflowReads:
        names = (
            None
            if self.completed_names is None or other.completed_names is None
            else self.completed_names | other.completed_names
        )
        return WorkflowReads(self.readers | other.readers, names)


NO_WORKFLOW_READS = WorkflowReads()


def workflow_reads(policies: Mapping[str, pst.Template]) -> WorkflowReads:
    readers: set[str] = set()
    names: set[str] | None = set()
    for policy_id, policy in policies.items():
        finder = _Finder()
        finder.visit(policy.clauses)
        if finder.reads_state:
            readers.add(policy_id)
        if finder.any_completed:
            names = None
        elif names is not None:
            names.update(finder.completed_names)
    return WorkflowReads(frozenset(readers), None if names is None else frozenset(names))


def _is_context(node: object) -> bool:
    return isinstance(node, pst.Var) and node.name == "context"


def _is_workflow(node: object) -> bool:
    return isinstance(node, pst.GetAttr) and node.attr == "workflow" and _is_context(node.base)


def _is_completed(node: object) -> bool:
    return isinstance(node, pst.GetAttr) and node.attr == "completed" and _is_workflow(node.base)


def _literals(node: object) -> tuple[str, ...] | None:
    """The strings of a string literal or a set of them, or None for anything else."""
    if isinstance(node, pst.StringLit):
        return (node.value,)
    if isinstance(node, pst.Set):
        strings = tuple(element.value for element in node.elements if isinstance(element, pst.StringLit))
        return strings if len(strings) == len(node.elements) else None
    return None


class _Finder:
    """Walks one policy's conditions (with an explicit stack: conditions nest deeply)."""

    def __init__(self) -> None:
        self.reads_state = False
        self.any_completed = False
        self.completed_names: set[str] = set()

    def visit(self, root: Any) -> None:
        pending: list[Any] = [root]
        while pending:
            node = pending.pop()
            if _is_context(node):  # the whole context: anything may be read
                self.reads_state = self.any_completed = True
            elif isinstance(node, pst.BinaryOp) and node.op in _SET_TESTS and _is_completed(node.left):
                self.reads_state = True
                found = _literals(node.right)
                if found is None:
                    self.any_completed = True
                    pending.append(node.right)
                else:
                    self.completed_names.update(found)
            elif isinstance(node, (pst.GetAttr, pst.HasAttr)) and _is_workflow(node.base):
                attribute = node.attr if isinstance(node, pst.GetAttr) else node.attrs[0]
                if attribute in _STATE_ATTRIBUTES:
                    self.reads_state = True
                    self.any_completed = self.any_completed or attribute == "completed"
                # `context.workflow.id` reads nothing the database holds.
            elif isinstance(node, (pst.GetAttr, pst.HasAttr)) and _is_context(node.base):
                if _is_workflow(node):  # `context.workflow` whole
                    self.reads_state = self.any_completed = True
                # any other attribute (`context.input`, `context has workflow`) is not the workflow's state
            elif isinstance(node, (tuple, list)):
                pending.extend(node)
            elif isinstance(node, Mapping):
                pending.extend(node.values())
            elif dataclasses.is_dataclass(node):
                pending.extend(getattr(node, field.name) for field in dataclasses.fields(node))
