"""The `X-Workflow-Id` header: the workflow of an HTTP request, for clients that cannot set `_meta`.

Checked here, once, before the request reaches the pipeline: a value that cannot name a workflow
(empty, repeated, longer than 256 characters, not printable UTF-8) is refused with a sentence
saying so, rather than filed under a workflow nobody meant. `_meta`'s key wins over the header.
"""

from __future__ import annotations

from collections.abc import Iterable

from gateway.calls import WORKFLOW_HEADER, workflow_id_problem
from gateway.errors import InvalidWorkflowId

_HEADER = WORKFLOW_HEADER.encode("latin-1")
_SOURCE = "the X-Workflow-Id header"


def workflow_header(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The header's workflow id, None without the header; raises `InvalidWorkflowId` for a bad one."""
    found: str | None = None
    for key, raw in headers:
        if key.lower() != _HEADER:
            continue
        if found is not None:
            raise InvalidWorkflowId(f"{_SOURCE} appears more than once; send it once")
        try:
            value = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise InvalidWorkflowId(f"{_SOURCE} is not valid UTF-8; send printable text") from None
        problem = workflow_id_problem(value, _SOURCE)
        if problem is not None:
            raise InvalidWorkflowId(problem)
        found = value
    return found
