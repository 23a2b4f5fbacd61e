"""What is wrong with a connector's offer, found when its backend lists: the catalog refuses, never guesses.

An override naming no listed tool is almost always a typo, and the tool it meant keeps its
defaults (listed, callable, without the labels policies look for). Two different tools (or
prompts) that end up with one exposed name cannot both be reached by it, and serving either
would let one backend stand in for the other. Messages are written for the person who fixes
the file or the backend.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from typing import TypeVar

from gateway.catalog.entries import PromptEntry, ToolEntry
from gateway.connectors.base import JsonObject
from gateway.settings.connectors import ConnectorBase

Entry = TypeVar("Entry", ToolEntry, PromptEntry)

#: A backend's tool names are spelled out in an override problem only when there are this few.
_NAMES_IN_HINT = 10
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def unknown_overrides(settings: ConnectorBase, definitions: Iterable[JsonObject]) -> Iterable[str]:
    """One problem per `[tools.<name>]` table whose name the backend does not list."""
    listed = [str(definition["name"]) for definition in definitions]
    known = set(listed)
    for name in settings.tools:
        if name in known:
            continue
        close = difflib.get_close_matches(name, listed, n=3)
        if close:
            hint = "closest tool names: " + ", ".join(repr(c) for c in close)
        elif not listed:
            hint = "it lists no tools"
        elif len(listed) <= _NAMES_IN_HINT:
            hint = "it lists " + ", ".join(repr(c) for c in listed)
        else:
            hint = f"none of its {len(listed)} tools has a similar name"
        yield (
            f"{settings.location('tools', name)}: [tools.{_toml_key(name)}] names no tool of backend "
            f"'{settings.name}' ({hint}); correct the name or remove the table. Until then none of this "
            "connector's tools is offered to agents, so a restriction meant for one of them cannot be missed"
        )


def unknown_lock_paths(settings: ConnectorBase, definitions: Iterable[JsonObject]) -> Iterable[str]:
    """One problem per lock path of a listed tool that names no property of the tool's input schema.

    A lock on an argument the tool does not have would give every call the same key (`null`):
    the calls would all wait for each other instead of only those on one record. Only schemas
    that declare their properties are checked; a path below an object that declares none is
    taken as written.
    """
    schemas = {str(definition["name"]): definition.get("inputSchema") for definition in definitions}
    for name, override in settings.tools.items():
        if not override.lock or name not in schemas:
            continue
        for path in override.lock:
            missing = _missing_property(schemas[name], path.split(".")[1:])
            if missing is None:
                continue
            yield (
                f"{settings.location('tools', name, 'lock')}: [tools.{_toml_key(name)}] lock path '{path}' names no "
                f"argument of tool '{name}' of backend '{settings.name}' (its input schema has no property "
                f"'{missing}'); correct the path. Until then none of this connector's tools is offered to agents, "
                "so calls that must not overlap cannot run unlocked"
            )


def _missing_property(schema: object, steps: Sequence[str]) -> str | None:
    """The first property of `steps` the schema declares it does not have, or None."""
    walked: list[str] = []
    for step in steps:
        if not isinstance(schema, dict):
            return None
        properties = schema.get("properties")
        if not isinstance(properties, dict):
            return None  # undeclared: the schema does not say
        walked.append(step)
        if step not in properties:
            return ".".join(walked)
        schema = properties[step]
    return None


def by_exposed_name(entries: Iterable[Entry]) -> tuple[dict[str, Entry], dict[str, list[Entry]]]:
    """(unique, clashing) by exposed name; a backend listing one name twice still has one tool of that name."""
    groups: dict[str, list[Entry]] = {}
    for entry in entries:
        group = groups.setdefault(entry.exposed, [])
        if all((e.connector, e.original) != (entry.connector, entry.original) for e in group):
            group.append(entry)
    unique = {name: group[0] for name, group in groups.items() if len(group) == 1}
    return unique, {name: group for name, group in groups.items() if len(group) > 1}


def collision_problem(kind: str, clash: Sequence[ToolEntry | PromptEntry]) -> str:
    """The problem reported on every connector of a clash: which originals, from where, under which name."""
    named = " and ".join(f"'{entry.original}' of connector '{entry.connector}'" for entry in clash)
    every = "both" if len(clash) == 2 else "all"
    return (
        f"{kind} {named} would {every} be exposed as '{clash[0].exposed}'; none of them is offered, so that one "
        "cannot stand in for the other. Rename one of them at its backend"
    )


def _toml_key(name: str) -> str:
    """The name as it is written in a table header, quoted when TOML needs it (`[tools."get.customer"]`)."""
    if _BARE_KEY.fullmatch(name):
        return name
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
