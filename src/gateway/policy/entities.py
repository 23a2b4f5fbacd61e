"""The Cedar entities of one catalog, and the per-request additions for who is asking.

The base (servers, tools, prompts, and the actions with their groups) is parsed once per
catalog or policy load, always WITH the schema: entities parsed without it have no action
groups, and `action in Action::"call_tool"` then silently never matches. Each principal adds
its `Agent`, `Role`s and `User` as a small delta on top of the base; the combined handle is
cached per principal until the next load. Resources are added per request, because a URI
served by a template is not known before it is asked for.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import cedarpy
import orjson

from gateway.identity.principal import Principal
from gateway.policy.schema import AGENT, PROMPT, RESOURCE, ROLE, SERVER, TOOL, USER, GeneratedSchema
from gateway.resource_uris import exposed_uri

#: Principals whose entity handles are kept; past this the cache starts over (cheap to rebuild).
PRINCIPAL_CACHE_SIZE = 4096

#: Up to this many base entities, a principal's handle is the base plus a delta (fast, but it holds
#: the GIL for time in proportion to the base: over a second at 50,000 tools); past it, the handle
#: is parsed whole with the GIL released, so a worker thread building it leaves requests flowing.
#: Past it too, listings ask Cedar's partial evaluation with only the entities of the request (see
#: `for_listing`): its cost grows with the entities it is given, 65 ms a tool at 50,000 tools.
DELTA_BASE_ENTITIES = 2000

#: Principals whose handles a new load builds before it is put in force, so the agents at work
#: find theirs ready instead of waiting for it on their next call.
PRINCIPALS_CARRIED_OVER = 16

PrincipalKey = tuple[str, tuple[str, ...], str | None, tuple[str, ...]]


def uid(entity_type: str, entity_id: str) -> dict[str, str]:
    """An entity reference in Cedar's JSON form (safe for any id, unlike the `Type::"id"` text form)."""
    return {"type": entity_type, "id": entity_id}


def uid_text(entity_type: str, entity_id: str) -> str:
    """An entity reference in Cedar's text form, with the id escaped as a Cedar string literal."""
    escaped = []
    for char in entity_id:
        if char in ('"', "\\"):
            escaped.append("\\" + char)
        elif char == "\n":
            escaped.append("\\n")
        elif char == "\r":
            escaped.append("\\r")
        elif char == "\t":
            escaped.append("\\t")
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            escaped.append(f"\\u{{{ord(char):x}}}")
        else:
            escaped.append(char)
    return f'{entity_type}::"{"".join(escaped)}"'


def principal_key(principal: Principal) -> PrincipalKey:
    return (principal.agent, tuple(principal.roles), principal.user, tuple(principal.scopes))


def _entity(
    entity_type: str, entity_id: str, attrs: dict[str, Any], parents: Iterable[dict[str, str]] = ()
) -> dict[str, Any]:
    return {"uid": uid(entity_type, entity_id), "attrs": attrs, "parents": list(parents)}


def base_entities(schema: GeneratedSchema) -> list[dict[str, Any]]:
    """Servers, tools and prompts of the catalog the schema was generated from."""
    servers: dict[str, None] = {}
    entities: list[dict[str, Any]] = []
    for shape in schema.tools.values():
        servers.setdefault(shape.connector)
        entities.append(
            _entity(
                TOOL,
                shape.exposed,
                {
                    "name": shape.original,
                    "server": shape.connector,
                    "annotations": shape.annotations.as_record(),
                    "labels": list(shape.labels),
                },
                [uid(SERVER, shape.connector)],
            )
        )
    for prompt in schema.prompts.values():
        servers.setdefault(prompt.connector)
        entities.append(
            _entity(
                PROMPT,
                prompt.exposed,
                {"name": prompt.original, "server": prompt.connector},
                [uid(SERVER, prompt.connector)],
            )
        )
    entities.extend(_entity(SERVER, name, {}) for name in servers)
    return entities


def principal_entities(principal: Principal) -> list[dict[str, Any]]:
    """The `Agent` with its `Role` parents, its `scopes` and, when it acts for someone, its `User`."""
    attrs: dict[str, Any] = {"scopes": list(dict.fromkeys(principal.scopes))}
    entities = [_entity(ROLE, role, {}) for role in dict.fromkeys(principal.roles)]
    if principal.user is not None:
        attrs["user"] = {"__entity": uid(USER, principal.user)}
        entities.append(_entity(USER, principal.user, {}))
    entities.append(
        _entity(AGENT, principal.agent, attrs, (uid(ROLE, role) for role in dict.fromkeys(principal.roles)))
    )
    return entities


def resource_entity(connector: str, uri: str) -> dict[str, Any]:
    """A backend's resource `uri`: its id is the exposed URI the agent names; `uri` is the backend's own."""
    return _entity(RESOURCE, exposed_uri(connector, uri), {"uri": uri, "server": connector}, [uid(SERVER, connector)])


EntityKey = tuple[str, str]


def parent_map(entities: Iterable[dict[str, Any]]) -> dict[EntityKey, tuple[EntityKey, ...]]:
    """Each entity's parents, as listed in the entity data given to Cedar."""
    return {
        (entity["uid"]["type"], entity["uid"]["id"]): tuple((p["type"], p["id"]) for p in entity["parents"])
        for entity in entities
    }


def ancestors(start: EntityKey, *parent_maps: Mapping[EntityKey, tuple[EntityKey, ...]]) -> tuple[EntityKey, ...]:
    """Everything `start` is `in` for Cedar (parents, their parents, ...), from the same entity data.

    Policy slicing drops a policy whose `principal in` or `resource in` names none of these, so
    they must be exactly what Cedar's `in` sees, never a separate idea of the hierarchy.
    """
    seen: dict[EntityKey, None] = {}
    pending = [parent for parents in parent_maps for parent in parents.get(start, ())]
    while pending:
        ancestor = pending.pop()
        if ancestor not in seen:
            seen[ancestor] = None
            pending.extend(parent for parents in parent_maps for parent in parents.get(ancestor, ()))
    return tuple(seen)


class EntityStore:
    """Parsed entity handles for one catalog: the base, and base-plus-principal per principal."""

    def __init__(
        self, schema: GeneratedSchema, schema_handle: cedarpy.Schema, carry_over: Iterable[Principal] = ()
    ) -> None:
        self._schema = schema_handle
        base = base_entities(schema)
        self._base_json = orjson.dumps(base)
        self._base_count = len(base)
        # Built in a worker thread at each load; a catalog of thousands of tools takes seconds, so the
        # GIL is released while Cedar parses and the JSON is made by orjson, which holds it briefly.
        self.base = cedarpy.Entities.from_json_str(self._base_json.decode(), schema=schema_handle, release_gil=True)
        self._base_parents = parent_map(base)
        self._base_by_key = {(entity["uid"]["type"], entity["uid"]["id"]): entity for entity in base}
        self._action_groups = schema.action_groups
        self._base_ancestors: dict[EntityKey, tuple[EntityKey, ...]] = {}
        self._principals: dict[PrincipalKey, tuple[cedarpy.Entities, tuple[EntityKey, ...]]] = {}
        self._known: dict[PrincipalKey, Principal] = {}
        for principal in carry_over:
            self._principal(principal)

    def recent_principals(self) -> list[Principal]:
        """The principals whose handles were built last, for the next load to build before it is in force."""
        return list(self._known.values())[-PRINCIPALS_CARRIED_OVER:]

    def for_listing(
        self, principal: Principal, action: str, resource: EntityKey, served: tuple[str, str] | None
    ) -> cedarpy.Entities | None:
        """Only the request's own entities, for judging a listing in a large catalog; None: use the whole set.

        The principal with its roles and user, the resource with its ancestors, and the action with
        its groups: what the scopes and the usual conditions (`principal.user`, `resource.annotations`,
        `resource in Server::...`) read. A condition that reads another catalog entity finds it
        missing, an evaluation error, so the item is left out of the listing (calls are still decided
        on the whole set).
        """
        groups = self._action_groups.get(action)
        if self._base_count <= DELTA_BASE_ENTITIES or groups is None:
            return None
        start = self._base_by_key.get(resource) if served is None else resource_entity(*served)
        if start is None:
            return None
        entities = [*principal_entities(principal), start]
        ancestry = (self._base_by_key.get(key) for key in self.resource_ancestors(*resource, served))
        entities.extend(entity for entity in ancestry if entity is not None)  # absent from the whole set too
        entities.append(_entity("Action", action, {}, (uid("Action", group) for group in groups)))
        entities.extend(_entity("Action", group, {}) for group in groups)
        return cedarpy.Entities.from_json_str(orjson.dumps(entities).decode())

    def knows(self, principal: Principal) -> bool:
        """Whether the principal's handle is ready (else `for_principal` builds it, which may take a while)."""
        return principal_key(principal) in self._principals

    def for_principal(self, principal: Principal) -> cedarpy.Entities:
        """Raises ValueError when the principal's entities do not fit the schema."""
        return self._principal(principal)[0]

    def principal_ancestors(self, principal: Principal) -> tuple[EntityKey, ...]:
        """What the agent is `in` for Cedar (its roles), from the entities `for_principal` gives it."""
        return self._principal(principal)[1]

    def resource_ancestors(
        self, resource_type: str, resource_id: str, served: tuple[str, str] | None
    ) -> tuple[EntityKey, ...]:
        """What a tool, prompt, server or resource is `in` for Cedar, from the same entities.

        `served` is the (connector, backend's uri) of a resource entity added per request (`for_resource`).
        """
        start = (resource_type, resource_id)
        if served is None:
            found = self._base_ancestors.get(start)
            if found is None:
                found = self._base_ancestors[start] = ancestors(start, self._base_parents)
            return found
        return ancestors(start, parent_map([resource_entity(*served)]), self._base_parents)

    def _principal(self, principal: Principal) -> tuple[cedarpy.Entities, tuple[EntityKey, ...]]:
        key = principal_key(principal)
        cached = self._principals.get(key)
        if cached is None:
            entities = principal_entities(principal)
            delta = orjson.dumps(entities)
            if self._base_count <= DELTA_BASE_ENTITIES or not entities:
                handle = self.base.with_added_json_str(delta.decode(), schema=self._schema)
            else:
                whole = self._base_json[:-1] + b"," + delta[1:] if self._base_count else delta
                handle = cedarpy.Entities.from_json_str(whole.decode(), schema=self._schema, release_gil=True)
            cached = (handle, ancestors((AGENT, principal.agent), parent_map(entities), self._base_parents))
            if len(self._principals) >= PRINCIPAL_CACHE_SIZE:
                self._principals.clear()
                self._known.clear()
            self._principals[key] = cached
            self._known[key] = principal
        return cached

    def for_resource(self, principal: Principal, connector: str, uri: str) -> cedarpy.Entities:
        """Raises ValueError when the principal's or the resource's entities do not fit the schema."""
        return self.for_principal(principal).with_added_json_str(
            json.dumps([resource_entity(connector, uri)]), schema=self._schema
        )
