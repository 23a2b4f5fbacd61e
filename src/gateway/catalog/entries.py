"""What the catalog hands out: one exposed tool, prompt or resource, and where it lives.

Values only, frozen, so the pipeline and the policies can hold an entry while the catalog swaps
in a new listing without either seeing it change under them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ToolEntry:
    """One exposed tool: where it lives and the definition an agent is shown."""

    exposed: str
    connector: str
    original: str
    definition: Mapping[str, Any]
    labels: tuple[str, ...] = ()
    input_schema: Mapping[str, Any] | None = None
    reasoning: str = "off"
    reasoning_parameter: str | None = None
    #: The connector file shares a summary of its results with the call's workflow (`share_result`).
    share_result: bool = False

    @property
    def annotations(self) -> Mapping[str, Any]:
        return self.definition.get("annotations") or {}

    @property
    def backend_input_schema(self) -> Mapping[str, Any] | None:
        """The backend's own input schema, without the reasoning parameter the gateway adds."""
        return self.input_schema if self.input_schema is not None else self.definition.get("inputSchema")


@dataclass(frozen=True, slots=True)
class PromptEntry:
    exposed: str
    connector: str
    original: str
    definition: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ResourceEntry:
    """One exposed resource or URI template: the backend that lists it, and what an agent is shown.

    For a template, `exposed` and `original` are the template texts.
    """

    exposed: str
    connector: str
    original: str
    definition: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ResourceRoute:
    """Which backend serves an exposed resource URI, and the URI that backend knows it by."""

    connector: str
    uri: str
    exposed: str
