"""Finding a connector object: by entry point name (`gateway.connectors` group) or `module:attribute`."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from gateway.sdk.connector import Connector

ENTRY_POINT_GROUP = "gateway.connectors"


class ConnectorNotFound(LookupError):
    """The entry point or module names nothing that is a connector."""


def load(target: str, *, path: Iterable[Path] = ()) -> Connector[Any]:
    """`module:attribute` imports that; any other string is an entry point of `gateway.connectors`."""
    for directory in path:
        if str(directory) not in sys.path:
            sys.path.insert(0, str(directory))
    if ":" in target:
        module_name, _, attribute = target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            raise ConnectorNotFound(
                f"module {module_name!r} cannot be imported ({exc}); "
                "install its package, or set `path` to its directory"
            ) from None
        value: object = module
        for part in attribute.split("."):
            if not hasattr(value, part):
                raise ConnectorNotFound(f"module {module_name!r} has no attribute {attribute!r}")
            value = getattr(value, part)
    else:
        found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == target]
        if not found:
            names = sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))
            raise ConnectorNotFound(
                f"no installed package declares the entry point {target!r} in group {ENTRY_POINT_GROUP!r} "
                f"(installed: {', '.join(names) or 'none'}); install the connector's package"
            )
        value = found[0].load()
    if not isinstance(value, Connector):
        raise ConnectorNotFound(f"{target!r} is a {type(value).__name__}, not a gateway.sdk.Connector")
    return value
