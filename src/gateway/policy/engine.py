"""The access policy engine: parsed once per load, swapped whole on reload, failing closed.

`load` reads `<policy_dir>/access/*.cedar`, generates the Cedar schema from the live catalog,
validates every policy against it and builds the parsed policy set, schema and entities. Any
failure keeps the set that was working before (none at first start: everything is denied) and
is reported with file and line. A policy that names the actions of a connector that has never
listed waits, left out, when leaving it out cannot allow anything (see `waiting.py`); it is
loaded at the first load after that connector lists. Decisions run Cedar inline on the parsed
handles and only on the policies whose action, principal and resource scopes can match the
request (see `slices.py`). Whatever goes wrong while deciding (an evaluation error in any
policy, a missing entity, a request Cedar refuses, no decision) is a deny, logged with its cause.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import cedarpy
import orjson

from gateway.catalog import Catalog, PromptEntry, ResourceEntry, ToolEntry
from gateway.errors import PolicyLoadError
from gateway.identity.principal import Principal
from gateway.policy.context import ArgumentLimits, ContextResult, call_context, common_context
from gateway.policy.decision import Decision, PolicyRef, allow, deny
from gateway.policy.entities import EntityKey, EntityStore, principal_key, uid, uid_text
from gateway.policy.loader import LoadedPolicies, parse_policies, policy_set, read_policy_files, validation_errors
from gateway.policy.schema import (
    AGENT,
    GET_PROMPT,
    LIST_TOOLS,
    PROMPT,
    READ_RESOURCE,
    RESOURCE,
    SERVER,
    TOOL,
    GeneratedSchema,
    generate_schema,
)
from gateway.policy.slices import PolicySlices, ScopeTarget
from gateway.policy.waiting import Unlisted, WaitingPolicy, sort_problems
from gateway.resource_uris import exposed_uri

logger = logging.getLogger(__name__)

#: What cedarpy raises for a request it cannot take (bad entity, bad context, internal failure).
_ENGINE_FAILURES = (ValueError, TypeError, KeyError, RuntimeError, OverflowError)

#: Visibility answers kept per loaded set; past this the cache starts over.
VISIBILITY_CACHE_SIZE = 65536

#: What a failing schema generator may raise on a malformed tool definition.
_GENERATOR_FAILURES = (TypeError, ValueError, AttributeError, KeyError, RecursionError)


@dataclass(frozen=True, slots=True)
class PolicyStatus:
    """What `gateway policy status`, `/readyz` and the console say about the access policies."""

    loaded: bool
    policy_count: int
    loaded_at: datetime | None
    last_error: str | None
    limitations: tuple[str, ...]
    #: Policies left out until the connectors they name have listed, one readable line each.
    waiting: tuple[str, ...] = ()


@dataclass(frozen=True)
class _PolicyState:
    """Everything one successful load produced; replaced whole, never changed (caches aside)."""

    loaded: LoadedPolicies
    schema: GeneratedSchema
    schema_handle: cedarpy.Schema
    entities: EntityStore
    slices: PolicySlices
    loaded_at: datetime
    waiting: tuple[WaitingPolicy, ...] = ()
    #: Connectors that had never listed at this load: their resources are denied until the next load,
    #: since a policy about them may be waiting (tools and prompts are checked against the schema).
    unlisted: frozenset[str] = frozenset()
    visibility: dict[tuple[Any, ...], bool] = field(default_factory=dict)


class PolicyEngine:
    """Decides, per request, whether the access policies allow it; see the module docstring."""

    def __init__(self, policy_dir: Path, *, limits: ArgumentLimits | None = None) -> None:
        self._policy_dir = Path(policy_dir)
        self._access_dir = self._policy_dir / "access"
        self._limits = limits or ArgumentLimits()
        self._state: _PolicyState | None = None
        self._lock = threading.Lock()
        self._fingerprint: object = None
        self._last_error: str | None = None
        self._logged_failure: tuple[object, str] | None = None
        self._last_schema: GeneratedSchema | None = None

    # -- loading -----------------------------------------------------------------------------

    @property
    def policy_dir(self) -> Path:
        return self._policy_dir

    def load(self, catalog: Catalog) -> None:
        """Load the files against `catalog`; on failure raise PolicyLoadError and keep the previous set.

        A failure is not logged here: the caller reports it (the CLI prints it, the running
        gateway logs it through `try_load`), so each error reaches its reader once.
        """
        with self._lock:
            fingerprint = self._current_fingerprint()
            try:
                state = self._build(catalog)
            except PolicyLoadError as exc:
                self._last_error = str(exc)
                raise
            finally:
                self._fingerprint = fingerprint
            self._state = state
            self._last_error = None
            self._logged_failure = None
        logger.info(
            "access policies loaded",
            extra={"policies": len(state.loaded), "files": [str(f.path) for f in state.loaded.files]},
        )
        if state.waiting:
            connectors = ", ".join(dict.fromkeys(name for policy in state.waiting for name in policy.connectors))
            logger.warning(
                "access policies wait for connectors that have not listed their tools yet (%s): %d not loaded; "
                "they load when those connectors list, and until then their tools are unavailable",
                connectors,
                len(state.waiting),
                extra={"waiting": [policy.describe() for policy in state.waiting]},
            )
        if state.schema.limitations:
            logger.info(
                "some tool arguments are offered to policies as JSON text",
                extra={"schema_limitations": list(state.schema.limitations)},
            )

    def try_load(self, catalog: Catalog) -> bool:
        """`load` for the running gateway: never raises; returns whether a new set is active.

        A failure is logged once: the same error for the same files (the catalog changed, the
        policies did not) is not repeated, while every edit that fails is reported.
        """
        try:
            self.load(catalog)
        except PolicyLoadError as exc:
            failure = (self._fingerprint, str(exc))
            if failure != self._logged_failure:
                self._logged_failure = failure
                logger.error(
                    "access policies not loaded (%s): %s",
                    "the previous set stays active" if self._state else "every request is denied",
                    exc,
                )
            return False
        return True

    def catalog_changed(self, catalog: Catalog) -> None:
        """Re-validate the current files against a changed catalog; never raises (see `status`)."""
        self.try_load(catalog)

    def reload_if_changed(self, catalog: Catalog) -> bool:
        """Reload when a policy file was added, removed or changed; returns whether a new set is active."""
        if self._current_fingerprint() == self._fingerprint:
            return False
        return self.try_load(catalog)

    async def watch(self, catalog_provider: Callable[[], Catalog], interval: float = 1.0) -> None:
        """Poll the policy files forever; loads run in a worker thread so requests keep flowing."""
        while True:
            await anyio.to_thread.run_sync(self.reload_if_changed, catalog_provider())
            await anyio.sleep(interval)

    @property
    def loaded(self) -> bool:
        """Whether a valid set is active; cheap enough to ask on every request."""
        return self._state is not None

    @property
    def status(self) -> PolicyStatus:
        state = self._state
        schema = self._last_schema
        return PolicyStatus(
            loaded=state is not None,
            policy_count=len(state.loaded) if state else 0,
            loaded_at=state.loaded_at if state else None,
            last_error=self._last_error,
            limitations=schema.limitations if schema else (),
            waiting=tuple(policy.describe() for policy in state.waiting) if state else (),
        )

    def policies(self) -> tuple[PolicyRef, ...]:
        """The active policies, in file order (empty when none are loaded)."""
        state = self._state
        return tuple(state.loaded.refs.values()) if state else ()

    def schema_json(self) -> dict[str, Any]:
        """The Cedar schema (JSON format) of the last catalog seen, for people writing policies."""
        schema = self._last_schema
        if schema is None:
            return {}
        return json.loads(json.dumps(schema.document))

    def _current_fingerprint(self) -> object:
        """Names, sizes, modification times and inodes of the policy files: cheap to take every second."""
        try:
            with os.scandir(self._access_dir) as entries:
                return tuple(
                    sorted(
                        (entry.name, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino)
                        for entry in entries
                        if entry.name.endswith(".cedar") and (stat := entry.stat())
                    )
                )
        except OSError as exc:
            return ("unreadable", type(exc).__name__)

    def _build(self, catalog: Catalog) -> _PolicyState:
        files = read_policy_files(self._access_dir)
        # Taken before the schema: a connector listing meanwhile is then in the schema and still counted
        # as unlisted (its resources wait for the next load), never the other way round.
        unlisted = Unlisted.of(catalog)
        try:
            schema = generate_schema(catalog)
        except _GENERATOR_FAILURES as exc:
            raise PolicyLoadError(f"the catalog could not be turned into a Cedar schema: {exc!r}") from None
        self._last_schema = schema
        try:
            # orjson: the standard encoder holds the GIL for seconds on a schema of thousands of tools.
            schema_handle = cedarpy.Schema.from_json_str(orjson.dumps(schema.document).decode(), release_gil=True)
        except ValueError as exc:
            raise PolicyLoadError(f"Cedar refused the schema generated from the catalog: {exc}") from None
        parsed = parse_policies(files)
        problems = sort_problems(parsed, validation_errors(parsed, schema_handle), schema, unlisted)
        if problems.errors:
            raise PolicyLoadError("\n".join(problems.errors))
        loaded = parsed.without(frozenset(policy.id for policy in problems.waiting))
        try:
            policy_set(loaded.policies)
            previous = self._state
            carry_over = previous.entities.recent_principals() if previous is not None else ()
            entities = EntityStore(schema, schema_handle, carry_over)
        except ValueError as exc:
            raise PolicyLoadError(f"the policies or the catalog's entities were refused by Cedar: {exc}") from None
        return _PolicyState(
            loaded=loaded,
            schema=schema,
            schema_handle=schema_handle,
            entities=entities,
            slices=PolicySlices(loaded.policies, schema.action_groups),
            loaded_at=datetime.now(UTC),
            waiting=problems.waiting,
            unlisted=frozenset(unlisted.connectors),
        )

    # -- decisions ---------------------------------------------------------------------------

    def ready_for(self, principal: Principal) -> bool:
        """Whether deciding for `principal` is quick; when not, `prepare` it in a worker thread first."""
        state = self._state
        return state is None or state.entities.knows(principal)

    def prepare(self, principal: Principal) -> None:
        """Build what deciding for `principal` needs (a second or more with tens of thousands of tools)."""
        state = self._state
        if state is not None:
            try:
                state.entities.for_principal(principal)
            except ValueError:
                pass  # the decision itself reports the cause and denies

    def decide_call(
        self,
        principal: Principal,
        tool: ToolEntry,
        arguments: Mapping[str, Any],
        *,
        reasoning: str | None = None,
        workflow: str | None = None,
        session_id: str | None = None,
        client: str | None = None,
        request_id: str | int | None = None,
        now: datetime | None = None,
    ) -> Decision:
        """Whether `principal` may call `tool` with these arguments."""
        what = f"call tool '{tool.exposed}'"
        state = self._state
        if state is None:
            return self._unloaded(what)
        shape = _current_shape(state, tool)
        if shape is None:
            logger.warning(
                "tool unknown to the loaded access policies, or changed since they were validated; denied",
                extra={"agent": principal.agent, "tool": tool.exposed},
            )
            return deny(
                f"tool '{tool.exposed}' is not in the catalog the access policies were validated against; "
                "denied until the policies are re-validated"
            )
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, Mapping):
            return deny("the arguments must be a JSON object; the call is denied")
        context = call_context(
            shape.input,
            arguments,
            reasoning=reasoning,
            workflow=workflow,
            session_id=session_id,
            client=client,
            request_id=request_id,
            now=now,
            limits=self._limits,
        )
        return self._decide(state, principal, tool.exposed, uid(TOOL, tool.exposed), context, what)

    def decide_read_resource(
        self,
        principal: Principal,
        connector: str,
        uri: str,
        *,
        reasoning: str | None = None,
        workflow: str | None = None,
        session_id: str | None = None,
        client: str | None = None,
        request_id: str | int | None = None,
        now: datetime | None = None,
    ) -> Decision:
        """Whether `principal` may read the resource the backend `connector` knows as `uri`.

        Policies name it by the URI the agent sees (`Resource::"gateway://<connector>/<uri>"`).
        """
        exposed = exposed_uri(connector, uri)
        what = f"read resource '{exposed}'"
        state = self._state
        if state is None:
            return self._unloaded(what)
        if connector in state.unlisted:
            return deny(
                f"server '{connector}' listed its resources after the access policies were validated; "
                "denied until they are re-validated"
            )
        context = self._common(reasoning, workflow, session_id, client, request_id, now)
        return self._decide(
            state, principal, READ_RESOURCE, uid(RESOURCE, exposed), context, what, resource_entity=(connector, uri)
        )

    def decide_get_prompt(
        self,
        principal: Principal,
        prompt: PromptEntry,
        *,
        reasoning: str | None = None,
        workflow: str | None = None,
        session_id: str | None = None,
        client: str | None = None,
        request_id: str | int | None = None,
        now: datetime | None = None,
    ) -> Decision:
        """Whether `principal` may get `prompt`."""
        what = f"get prompt '{prompt.exposed}'"
        state = self._state
        if state is None:
            return self._unloaded(what)
        if prompt.exposed not in state.schema.prompts:
            return deny(f"prompt '{prompt.exposed}' is not in the catalog the access policies were validated against")
        context = self._common(reasoning, workflow, session_id, client, request_id, now)
        return self._decide(state, principal, GET_PROMPT, uid(PROMPT, prompt.exposed), context, what)

    def decide_list_tools(
        self,
        principal: Principal,
        connector: str,
        *,
        session_id: str | None = None,
        client: str | None = None,
        request_id: str | int | None = None,
        now: datetime | None = None,
    ) -> Decision:
        """Whether `principal` may list the tools of `connector` at all."""
        what = f"list the tools of server '{connector}'"
        state = self._state
        if state is None:
            return self._unloaded(what)
        context = self._common(None, None, session_id, client, request_id, now)
        return self._decide(state, principal, LIST_TOOLS, uid(SERVER, connector), context, what)

    # -- listings ----------------------------------------------------------------------------

    def visible_tools(
        self,
        principal: Principal,
        tools: Iterable[ToolEntry],
        *,
        session_id: str | None = None,
        client: str | None = None,
        request_id: str | int | None = None,
        now: datetime | None = None,
    ) -> list[ToolEntry]:
        """The tools `principal` may list (`list_tools` on their server) and may call for some arguments.

        A tool is kept when Cedar, evaluating its `call_tool` action with the whole context
        unknown, does not deny outright: some arguments, time or reasoning could be allowed.
        So a callable tool is never hidden; a tool shown may still be denied for particular
        arguments, which the call itself decides.
        """
        listable: dict[str, bool] = {}
        visible = []
        for tool in tools:
            if tool.connector not in listable:
                listable[tool.connector] = self.decide_list_tools(
                    principal, tool.connector, session_id=session_id, client=client, request_id=request_id, now=now
                ).allowed
            if listable[tool.connector] and self._may_call(principal, tool):
                visible.append(tool)
        return visible

    def visible_prompts(self, principal: Principal, prompts: Iterable[PromptEntry]) -> list[PromptEntry]:
        """The prompts `principal` may get in some context (the same rule as `visible_tools`)."""
        state = self._state
        if state is None:
            return []
        return [
            prompt
            for prompt in prompts
            if prompt.exposed in state.schema.prompts
            and self._possible(state, principal, GET_PROMPT, (PROMPT, prompt.exposed), None)
        ]

    def visible_resources(self, principal: Principal, resources: Iterable[ResourceEntry]) -> list[Mapping[str, Any]]:
        """The listed resources' definitions that `principal` may read in some context."""
        state = self._state
        if state is None:
            return []
        return [
            resource.definition
            for resource in resources
            if resource.connector not in state.unlisted
            and self._possible(
                state, principal, READ_RESOURCE, (RESOURCE, resource.exposed), (resource.connector, resource.original)
            )
        ]

    def visible_resource_templates(
        self, principal: Principal, templates: Iterable[ResourceEntry]
    ) -> list[Mapping[str, Any]]:
        """The definitions of the templates whose own URI template `principal` may read.

        A template is judged as the resource whose URI is the template text itself (for example
        `Resource::"gateway://crm/crm://customers/{customer_id}"` with `uri` the backend's
        `crm://customers/{customer_id}`), so `resource in Server::"crm"` and patterns such as
        `resource.uri like "crm://customers/*"` decide listings and reads alike.
        """
        return self.visible_resources(principal, templates)

    # -- evaluation --------------------------------------------------------------------------

    def _common(
        self,
        reasoning: str | None,
        workflow: str | None,
        session_id: str | None,
        client: str | None,
        request_id: str | int | None,
        now: datetime | None,
    ) -> ContextResult:
        return common_context(
            reasoning=reasoning,
            workflow=workflow,
            session_id=session_id,
            client=client,
            request_id=request_id,
            now=now,
            limits=self._limits,
        )

    @staticmethod
    def _unloaded(what: str) -> Decision:
        return deny(f"no access policies are loaded, so every request is denied (asked to {what})")

    def _decide(
        self,
        state: _PolicyState,
        principal: Principal,
        action: str,
        resource: dict[str, str],
        context: ContextResult,
        what: str,
        *,
        resource_entity: tuple[str, str] | None = None,
    ) -> Decision:
        if context.context is None:
            return self._unrepresentable(state, principal, action, resource, context, what, resource_entity)
        try:
            applicable = state.slices.for_request(
                action,
                _principal_target(state, principal),
                _resource_target(state, resource["type"], resource["id"], resource_entity),
            )
            result = cedarpy.is_authorized(
                {
                    "principal": uid(AGENT, principal.agent),
                    "action": uid("Action", action),
                    "resource": resource,
                    "context": applicable.context_for(context.context),
                },
                applicable.policies,
                _entities(state, principal, resource_entity),
                # No schema here: the context is built from the same types the schema declares, with
                # explicit entity and decimal forms, and Cedar re-checking it would double the cost.
                # A value of an unexpected type still fails closed (an evaluation error is a deny).
            )
        except _ENGINE_FAILURES as exc:
            return _failed(principal, action, (f"{type(exc).__name__}: {exc}",))
        return _decision(state, result, principal, action, what)

    def _unrepresentable(
        self,
        state: _PolicyState,
        principal: Principal,
        action: str,
        resource: dict[str, str],
        context: ContextResult,
        what: str,
        resource_entity: tuple[str, str] | None,
    ) -> Decision:
        """A request whose context cannot be built is denied; when the principal may not do this at all,
        the reason says so (as it would for any arguments) instead of describing the arguments."""
        problem = context.problem or "the request could not be evaluated; denied"
        result = self._partial(state, principal, action, (resource["type"], resource["id"]), resource_entity)
        if result is None or result.diagnostics.errors or result.decision is not cedarpy.Decision.Deny:
            return deny(problem, invalid_arguments=context.invalid_arguments)
        refs = state.loaded.refs
        forbids = tuple(
            sorted(
                (refs[i] for i in result.diagnostics.reasons if i in refs and refs[i].effect == "forbid"),
                key=lambda policy: (policy.file, policy.line),
            )
        )
        if forbids:
            return deny(_forbid_reason(forbids, _forbidden(principal, what)), forbids)
        return deny(f"no access policy allows agent '{principal.agent}' to {what}")

    def _may_call(self, principal: Principal, tool: ToolEntry) -> bool:
        state = self._state
        if state is None or _current_shape(state, tool) is None:
            return False
        return self._possible(state, principal, tool.exposed, (TOOL, tool.exposed), None)

    def _possible(
        self,
        state: _PolicyState,
        principal: Principal,
        action: str,
        resource: EntityKey,
        resource_entity: tuple[str, str] | None,
    ) -> bool:
        """Whether some context could make Cedar allow this request (cached per loaded set)."""
        key: tuple[Any, ...] = (principal_key(principal), action, resource)
        cached = state.visibility.get(key)
        if cached is not None:
            return cached
        verdict = self._scope_verdict(state, principal, action, resource, resource_entity)
        if verdict is not None:
            possible = verdict
        else:
            result = self._partial(state, principal, action, resource, resource_entity, for_listing=True)
            possible = (
                result is not None
                and not result.diagnostics.errors
                and (
                    result.decision is cedarpy.Decision.Allow
                    or (result.decision is cedarpy.Decision.NoDecision and bool(result.residuals))
                )
            )
        if len(state.visibility) >= VISIBILITY_CACHE_SIZE:
            state.visibility.clear()
        state.visibility[key] = possible
        return possible

    @staticmethod
    def _scope_verdict(
        state: _PolicyState,
        principal: Principal,
        action: str,
        resource: EntityKey,
        resource_entity: tuple[str, str] | None,
    ) -> bool | None:
        """The answer for every context when the scopes of the applicable policies decide it (see `slices`)."""
        try:
            applicable = state.slices.for_request(
                action, _principal_target(state, principal), _resource_target(state, *resource, resource_entity)
            )
        except _ENGINE_FAILURES:
            return None  # Cedar is asked, and reports the cause
        return applicable.verdict

    @staticmethod
    def _partial(
        state: _PolicyState,
        principal: Principal,
        action: str,
        resource: EntityKey,
        resource_entity: tuple[str, str] | None,
        *,
        for_listing: bool = False,
    ) -> cedarpy.PartialAuthzResult | None:
        """Cedar's partial evaluation with the whole context unknown; None when Cedar fails (logged).

        `for_listing` gives Cedar only the request's own entities when the catalog is large (see
        `EntityStore.for_listing`).
        """
        try:
            entities = state.entities.for_listing(principal, action, resource, resource_entity) if for_listing else None
            return cedarpy.is_authorized_partial(
                {
                    "principal": uid_text(AGENT, principal.agent),
                    "action": uid_text("Action", action),
                    "resource": uid_text(*resource),
                    "context": None,
                },
                state.slices.for_request(
                    action, _principal_target(state, principal), _resource_target(state, *resource, resource_entity)
                ).policies,
                entities if entities is not None else _entities(state, principal, resource_entity),
                schema=state.schema_handle,
            )
        except _ENGINE_FAILURES as exc:
            logger.warning(
                "policy partial evaluation failed; treated as deny",
                extra={"agent": principal.agent, "action": action, "error": f"{type(exc).__name__}: {exc}"},
            )
            return None


def _principal_target(state: _PolicyState, principal: Principal) -> ScopeTarget:
    """The agent as the principal scopes see it; raises ValueError like `_entities` when it does not fit."""
    return ScopeTarget(AGENT, principal.agent, state.entities.principal_ancestors(principal))


def _resource_target(
    state: _PolicyState, resource_type: str, resource_id: str, resource_entity: tuple[str, str] | None
) -> ScopeTarget:
    """The resource as the resource scopes see it, with the ancestry its entity has in Cedar."""
    return ScopeTarget(
        resource_type, resource_id, state.entities.resource_ancestors(resource_type, resource_id, resource_entity)
    )


def _entities(state: _PolicyState, principal: Principal, resource_entity: tuple[str, str] | None) -> cedarpy.Entities:
    """Raises ValueError when the principal's or resource's entities do not fit the schema."""
    if resource_entity is None:
        return state.entities.for_principal(principal)
    return state.entities.for_resource(principal, *resource_entity)


def _current_shape(state: _PolicyState, tool: ToolEntry) -> Any:
    """The tool as validated at load, or None when it is unknown or its definition changed since."""
    shape = state.schema.tools.get(tool.exposed)
    if shape is None:
        return None
    if shape.definition is not tool.definition and shape.definition != tool.definition:
        return None
    return shape


def _failed(
    principal: Principal, action: str, errors: tuple[str, ...], policies: tuple[PolicyRef, ...] = ()
) -> Decision:
    """Fail closed: whatever kept Cedar from a clean decision is a deny, logged with its cause."""
    logger.warning(
        "policy evaluation failed; denied",
        extra={"agent": principal.agent, "action": action, "errors": list(errors)},
    )
    if policies:
        return deny(_forbid_reason(policies, "a policy of this gateway forbids this request"), policies, errors)
    return deny(
        "the access policies could not be evaluated for this request, so it is denied; "
        "an administrator can find the cause in the gateway log",
        (),
        errors,
    )


def _forbid_reason(policies: tuple[PolicyRef, ...], fallback: str) -> str:
    """The first `@reason`; without one, the agent is not told the policy's id (the audit log has it)."""
    for policy in policies:
        if policy.annotations.get("reason"):
            return policy.annotations["reason"]
    return fallback


def _forbidden(principal: Principal, what: str) -> str:
    return f"a policy of this gateway forbids agent '{principal.agent}' to {what}"


def _decision(
    state: _PolicyState, result: cedarpy.AuthzResult, principal: Principal, action: str, what: str
) -> Decision:
    refs = state.loaded.refs
    determining = tuple(
        sorted(
            (refs[policy_id] for policy_id in result.diagnostics.reasons if policy_id in refs),
            key=lambda policy: (policy.file, policy.line),
        )
    )
    errors = tuple(result.diagnostics.errors)
    if result.decision is cedarpy.Decision.Allow and not errors:
        permits = tuple(policy for policy in determining if policy.effect == "permit")
        reason = next((p.annotations["reason"] for p in permits if p.annotations.get("reason")), None)
        if reason is None:
            reason = f"allowed by policy '{permits[0].id}'" if permits else "allowed"
        return allow(reason, permits)
    forbids = tuple(policy for policy in determining if policy.effect == "forbid")
    if errors or result.decision is not cedarpy.Decision.Deny:
        return _failed(principal, action, errors or (f"Cedar returned {result.decision.value}",), forbids)
    if forbids:
        return deny(_forbid_reason(forbids, _forbidden(principal, what)), forbids)
    return deny(f"no access policy allows agent '{principal.agent}' to {what}")
