"""Access decisions, per request, on the set the store has in force; failing closed.

Each decision reads the store's `current` set once and decides on it whole, so a reload never
changes the policies under a request. Decisions run Cedar inline on the parsed handles and
only on the policies whose action, principal and resource scopes can match the request (see
`slices.py`); when those policies have no conditions, their scopes alone decide and Cedar is
not asked (`_by_scopes`). Otherwise a tool call that approval policies can also apply to is
decided with them in the same evaluation, which answers whether it is held as well (see
`joint.py`). Whatever goes wrong while deciding (an evaluation error in any policy, a missing
entity, a request Cedar refuses, no decision) is a deny, logged with its cause.

Listings show an agent what it may use: a target is visible when Cedar, evaluating its action
with the whole context unknown, does not deny outright. These answers are cached per loaded
set; a denied tool call or prompt reads the same cache to say whether its target is hidden
from the agent altogether (`Decision.concealed`).
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import cedarpy

from gateway.calls import Call, Origin
from gateway.catalog import PromptEntry, ResourceEntry, ToolEntry
from gateway.identity.principal import Principal
from gateway.policy.context import ArgumentLimits, ContextResult, call_context, common_context
from gateway.policy.decision import Decision, PolicyRef, allow, deny
from gateway.policy.entities import EntityKey, principal_key, uid, uid_text
from gateway.policy.hold import NOT_HELD, ApprovalContext, HoldDecision, combine
from gateway.policy.prepared import PreparedCall
from gateway.policy.schema import (
    AGENT,
    GET_PROMPT,
    LIST_TOOLS,
    PROMPT,
    READ_RESOURCE,
    RESOURCE,
    SERVER,
    TOOL,
    ToolShape,
)
from gateway.policy.slices import ScopeTarget, Slice
from gateway.policy.store import ApprovalSet, PolicyState, PolicyStore
from gateway.resource_uris import exposed_uri

#: One logger for loading and deciding: operators know both as the policy engine.
logger = logging.getLogger("gateway.policy.engine")

#: What cedarpy raises for a request it cannot take (bad entity, bad context, internal failure).
_ENGINE_FAILURES = (ValueError, TypeError, KeyError, RuntimeError, OverflowError)

#: Visibility answers kept per loaded set; past this the cache starts over.
VISIBILITY_CACHE_SIZE = 65536


class PolicyDecisions:
    """Decides, per request, whether the access policies in force allow it; see the module docstring."""

    def __init__(self, store: PolicyStore, *, limits: ArgumentLimits | None = None) -> None:
        self._store = store
        self._limits = limits or ArgumentLimits()

    def ready_for(self, principal: Principal) -> bool:
        """Whether deciding for `principal` is quick; when not, `prepare` it in a worker thread first."""
        state = self._store.current
        return state is None or state.entities.knows(principal)

    def prepare(self, principal: Principal) -> None:
        """Build what deciding for `principal` needs (a second or more with tens of thousands of tools)."""
        state = self._store.current
        if state is not None:
            try:
                state.entities.for_principal(principal)
            except ValueError:
                pass  # the decision itself reports the cause and denies

    def reads_workflow_state(self, action: str) -> bool:
        """Whether a policy that can apply to `action` reads `context.workflow.completed` or `.agents`.

        Only then is the workflow's state read from the database before deciding: a dict lookup
        for every other call (see `workflow_reads.py`).
        """
        state = self._store.current
        return state is not None and state.reads_workflow_state(action)

    def tracks_completion(self, action: str) -> bool:
        """Whether a policy compares `context.workflow.completed` with `action`: its success must count at once."""
        state = self._store.current
        return state is not None and bool(state.workflow_reads.readers) and state.workflow_reads.tracks(action)

    # -- decisions ---------------------------------------------------------------------------

    def decide_call(
        self, call: Call, tool: ToolEntry, *, now: datetime | None = None, approval: ApprovalContext | None = None
    ) -> Decision:
        """Whether the call's principal may call `tool` with the call's arguments.

        `call` is the resolved call: its arguments are those the backend would see, its
        reasoning the one the agent stated. A deny says whether the tool is `concealed`.
        `approval` is given when a held call was decided by people and is about to run: the
        access policies see it as `context.approval`, so they can require or refuse it.
        """
        state = self._store.current
        decision = self._call(state, call, tool, now, approval)
        if decision.allowed or self._tool_visible(state, call.origin, tool, now):
            return decision
        return replace(decision, concealed=True)

    def decide_hold(
        self, call: Call, tool: ToolEntry, *, now: datetime | None = None, decision: Decision | None = None
    ) -> HoldDecision:
        """Whether a call the access policies allowed must wait for people to approve it.

        The approval policies are evaluated with the principal, action, resource and context
        the access decision used. This runs on every allowed call, so given that `decision` it
        mostly returns what Cedar already answered with it (`Decision.hold`: both sets were
        evaluated at once, see `joint.py`), or else evaluates the very request the decision was
        made on (`Decision.prepared`) instead of converting the arguments and writing the context
        out again. Without the decision, or when a reload came between, the request is built
        again the way the access decision builds it, at `now`.

        A matching approval `permit` holds the call; a matching approval `forbid` exempts it
        (forbid wins, as in Cedar); when none matches it runs. Several holding permits make one
        requirement (see `hold.combine`: union of approvers, largest quorum, shortest expiry,
        first reason in file order, shortest escalation to the union of escalation targets).

        Fails closed: when the approval policies cannot be evaluated (an evaluation error in
        any of them, such as reading an argument the call omitted, or a context that cannot be
        built), the call is held, and its requirement combines every approval permit whose
        scope applies to this action, principal and resource, since any of them might have
        matched. Only when none could is the call not held.

        The caller guarantees the access policies allowed the call. Without approval policies
        this reads one attribute and returns: it runs on every allowed call.
        """
        state = self._store.current
        approval = state.approval if state is not None else None
        if state is None or approval is None:
            return NOT_HELD
        principal = call.origin.principal
        action = tool.exposed
        prepared = decision.prepared if decision is not None else None
        if prepared is not None and not prepared.built_for(state, call, tool):
            prepared = None
        if prepared is not None and decision is not None and decision.hold is not None:
            return decision.hold
        try:
            if prepared is None:
                principal_target = _principal_target(state, principal)
                resource_target = _resource_target(state, TOOL, action, None)
            else:
                principal_target, resource_target = prepared.principal_target, prepared.resource_target
            applicable = approval.slices.for_request(action, principal_target, resource_target)
        except _ENGINE_FAILURES as exc:
            return _held_on_error(approval, principal, action, approval.slices.matching(action), _error(exc))
        if not applicable.members:
            return NOT_HELD
        if prepared is None:
            # The access decision's own checks, failing closed as a hold instead of a deny.
            shape = _current_shape(state, tool)
            if shape is None:
                problem = "the tool is not in the catalog the approval policies were validated against"
                return _held_on_error(approval, principal, action, applicable.members, (problem,))
            if call.arguments is not None and not isinstance(call.arguments, Mapping):
                problem = "the arguments are not a JSON object"
                return _held_on_error(approval, principal, action, applicable.members, (problem,))
            context = call_context(shape.input, call, now=now, limits=self._limits)
            if context.context is None:
                problem = context.problem or "the request's context could not be built"
                return _held_on_error(approval, principal, action, applicable.members, (problem,))
            prepared = _prepare(state, call, tool, principal_target, resource_target, context.context)
        try:
            result = cedarpy.is_authorized(
                prepared.request(applicable.context_keys), applicable.policies, _entities(state, principal, None)
            )
        except _ENGINE_FAILURES as exc:
            return _held_on_error(approval, principal, action, applicable.members, _error(exc))
        return _hold(approval, *_answer(result), principal, action, applicable.members)

    def may_hold(self, origin: Origin, tool: ToolEntry) -> bool:
        """Whether an approval permit's scope covers this agent and tool, so its calls may wait for people.

        For listings: scopes only, no conditions (they depend on each call's arguments), so a tool
        is said to need approval when some of its calls might. Without approval policies this is
        one attribute read.
        """
        state = self._store.current
        approval = state.approval if state is not None else None
        if state is None or approval is None:
            return False
        try:
            applicable = approval.slices.for_request(
                tool.exposed,
                _principal_target(state, origin.principal),
                _resource_target(state, TOOL, tool.exposed, None),
            )
        except _ENGINE_FAILURES:
            return True  # the hold itself fails closed; the listing says so too
        refs = approval.loaded.refs
        return any(refs[i].effect == "permit" for i in applicable.members if i in refs)

    def decide_read_resource(self, call: Call, *, now: datetime | None = None) -> Decision:
        """Whether the call's principal may read the resource `call.target` names (connector, backend URI).

        Policies name it by the URI the agent sees (`Resource::"gateway://<connector>/<uri>"`).
        """
        target = call.target
        if target is None:
            raise ValueError("decide_read_resource needs a resolved call (its target)")
        connector, uri = target.connector, target.original
        exposed = exposed_uri(connector, uri)
        what = f"read resource '{exposed}'"
        state = self._store.current
        if state is None:
            return _unloaded(what)
        if connector in state.unlisted:
            return deny(
                f"server '{connector}' listed its resources after the access policies were validated; "
                "denied until they are re-validated"
            )
        context = common_context(call, now=now, limits=self._limits)
        return self._decide(
            state,
            call.origin.principal,
            READ_RESOURCE,
            uid(RESOURCE, exposed),
            context,
            what,
            resource_entity=(connector, uri),
        )

    def decide_get_prompt(self, call: Call, prompt: PromptEntry, *, now: datetime | None = None) -> Decision:
        """Whether the call's principal may get `prompt`; a deny says whether the prompt is `concealed`."""
        state = self._store.current
        decision = self._prompt(state, call, prompt, now)
        if decision.allowed or self._prompt_visible(state, call.origin.principal, prompt):
            return decision
        return replace(decision, concealed=True)

    def decide_list_tools(self, origin: Origin, connector: str, *, now: datetime | None = None) -> Decision:
        """Whether the origin's principal may list the tools of `connector` at all."""
        return self._list_tools(self._store.current, origin, connector, now)

    # -- listings ----------------------------------------------------------------------------

    def visible_tools(
        self, origin: Origin, tools: Iterable[ToolEntry], *, now: datetime | None = None
    ) -> list[ToolEntry]:
        """The tools the origin's principal may list (`list_tools` on their server) and may call for some arguments.

        A tool is kept when Cedar, evaluating its `call_tool` action with the whole context
        unknown, does not deny outright: some arguments, time or reasoning could be allowed.
        So a callable tool is never hidden; a tool shown may still be denied for particular
        arguments, which the call itself decides.
        """
        state = self._store.current
        principal = origin.principal
        listable: dict[str, bool] = {}
        visible = []
        for tool in tools:
            if tool.connector not in listable:
                listable[tool.connector] = self._list_tools(state, origin, tool.connector, now).allowed
            if listable[tool.connector] and self._may_call(state, principal, tool):
                visible.append(tool)
        return visible

    def visible_prompts(self, origin: Origin, prompts: Iterable[PromptEntry]) -> list[PromptEntry]:
        """The prompts the origin's principal may get in some context (the same rule as `visible_tools`)."""
        state = self._store.current
        principal = origin.principal
        return [prompt for prompt in prompts if self._prompt_visible(state, principal, prompt)]

    def visible_resources(self, origin: Origin, resources: Iterable[ResourceEntry]) -> list[Mapping[str, Any]]:
        """The listed resources' definitions that the origin's principal may read in some context."""
        state = self._store.current
        if state is None:
            return []
        principal = origin.principal
        return [
            resource.definition
            for resource in resources
            if resource.connector not in state.unlisted
            and self._possible(
                state, principal, READ_RESOURCE, (RESOURCE, resource.exposed), (resource.connector, resource.original)
            )
        ]

    def visible_resource_templates(self, origin: Origin, templates: Iterable[ResourceEntry]) -> list[Mapping[str, Any]]:
        """The definitions of the templates whose own URI template the origin's principal may read.

        A template is judged as the resource whose URI is the template text itself (for example
        `Resource::"gateway://crm/crm://customers/{customer_id}"` with `uri` the backend's
        `crm://customers/{customer_id}`), so `resource in Server::"crm"` and patterns such as
        `resource.uri like "crm://customers/*"` decide listings and reads alike.
        """
        return self.visible_resources(origin, templates)

    # -- one request, on one loaded set --------------------------------------------------------

    def _call(
        self,
        state: PolicyState | None,
        call: Call,
        tool: ToolEntry,
        now: datetime | None,
        approval: ApprovalContext | None = None,
    ) -> Decision:
        what = f"call tool '{tool.exposed}'"
        if state is None:
            return _unloaded(what)
        principal = call.origin.principal
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
        if call.arguments is not None and not isinstance(call.arguments, Mapping):
            return deny("the arguments must be a JSON object; the call is denied")
        context = call_context(shape.input, call, now=now, limits=self._limits, approval=approval)
        if context.context is None or approval is not None:
            # An approved call about to run is not held again: its decision keeps no request for a hold.
            return self._decide(state, principal, tool.exposed, uid(TOOL, tool.exposed), context, what)
        return self._decide_call(state, call, tool, context.context, what)

    def _prompt(self, state: PolicyState | None, call: Call, prompt: PromptEntry, now: datetime | None) -> Decision:
        what = f"get prompt '{prompt.exposed}'"
        if state is None:
            return _unloaded(what)
        if prompt.exposed not in state.schema.prompts:
            return deny(f"prompt '{prompt.exposed}' is not in the catalog the access policies were validated against")
        context = common_context(call, now=now, limits=self._limits)
        return self._decide(state, call.origin.principal, GET_PROMPT, uid(PROMPT, prompt.exposed), context, what)

    def _list_tools(self, state: PolicyState | None, origin: Origin, connector: str, now: datetime | None) -> Decision:
        what = f"list the tools of server '{connector}'"
        if state is None:
            return _unloaded(what)
        context = common_context(origin, now=now, limits=self._limits)
        return self._decide(state, origin.principal, LIST_TOOLS, uid(SERVER, connector), context, what)

    def _tool_visible(self, state: PolicyState | None, origin: Origin, tool: ToolEntry, now: datetime | None) -> bool:
        """`visible_tools` for one tool; the cached half first, so a tool never callable costs no decision."""
        return (
            self._may_call(state, origin.principal, tool)
            and self._list_tools(state, origin, tool.connector, now).allowed
        )

    def _prompt_visible(self, state: PolicyState | None, principal: Principal, prompt: PromptEntry) -> bool:
        return (
            state is not None
            and prompt.exposed in state.schema.prompts
            and self._possible(state, principal, GET_PROMPT, (PROMPT, prompt.exposed), None)
        )

    def _may_call(self, state: PolicyState | None, principal: Principal, tool: ToolEntry) -> bool:
        if state is None or _current_shape(state, tool) is None:
            return False
        return self._possible(state, principal, tool.exposed, (TOOL, tool.exposed), None)

    # -- evaluation --------------------------------------------------------------------------

    def _decide(
        self,
        state: PolicyState,
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
            entities = _entities(state, principal, resource_entity)  # fails for the scopes' answer too
            answer = _by_scopes(applicable)
            if answer is None:
                answer = _answer(
                    cedarpy.is_authorized(
                        {
                            "principal": uid(AGENT, principal.agent),
                            "action": uid("Action", action),
                            "resource": resource,
                            "context": applicable.context_for(context.context),
                        },
                        applicable.policies,
                        entities,
                        # No schema here: the context is built from the same types the schema declares, with
                        # explicit entity and decimal forms, and Cedar re-checking it would double the cost.
                        # A value of an unexpected type still fails closed (an evaluation error is a deny).
                    )
                )
        except _ENGINE_FAILURES as exc:
            return _failed(principal, action, _error(exc))
        return _decision(state, *answer, principal, action, what)

    def _decide_call(
        self, state: PolicyState, call: Call, tool: ToolEntry, context: dict[str, Any], what: str
    ) -> Decision:
        """`_decide` for a tool call not yet approved: an allow keeps the request for `decide_hold`.

        When approval policies can apply to the call, Cedar evaluates them with the access
        policies, and an allow keeps their answer too (see `joint.py`); when that one answer does
        not tell the sets apart, the access policies are evaluated alone, and the approval
        policies later, as without approval policies. When the access policies' scopes alone
        decide, Cedar is not asked for them; approval policies that can apply are then evaluated
        alone by `decide_hold`, on the request kept here, which is the answer the joint evaluation
        would have given the hold.
        """
        principal, action = call.origin.principal, tool.exposed
        try:
            principal_target = _principal_target(state, principal)
            resource_target = _resource_target(state, TOOL, action, None)
            prepared = _prepare(state, call, tool, principal_target, resource_target, context)
            applicable = state.slices.for_request(action, principal_target, resource_target)
            entities = _entities(state, principal, None)
        except _ENGINE_FAILURES as exc:
            return _failed(principal, action, _error(exc))
        holding = _approval_slice(state, prepared)
        hold = None
        if holding is not None and not holding.members:
            hold = NOT_HELD
        settled = _by_scopes(applicable)
        if settled is not None:
            return _decision(state, *settled, principal, action, what, prepared, hold)
        if holding is not None and holding.members:
            decided, hold = _joint_decision(state, prepared, applicable, holding, entities, what)
            if decided is not None:
                return decided
        try:
            result = cedarpy.is_authorized(prepared.request(applicable.context_keys), applicable.policies, entities)
        except _ENGINE_FAILURES as exc:
            return _failed(principal, action, _error(exc))
        return _decision(state, *_answer(result), principal, action, what, prepared, hold)

    def _unrepresentable(
        self,
        state: PolicyState,
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

    def _possible(
        self,
        state: PolicyState,
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
        state: PolicyState,
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
        state: PolicyState,
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


def _prepare(
    state: PolicyState,
    call: Call,
    tool: ToolEntry,
    principal_target: ScopeTarget,
    resource_target: ScopeTarget,
    context: dict[str, Any],
) -> PreparedCall:
    """The Cedar request of a tool call, as both the access and the approval policies evaluate it."""
    action = tool.exposed
    uids = {
        "principal": uid(AGENT, call.origin.principal.agent),
        "action": uid("Action", action),
        "resource": uid(TOOL, action),
    }
    return PreparedCall(call, tool, weakref.ref(state), uids, principal_target, resource_target, context)


def _approval_slice(state: PolicyState, prepared: PreparedCall) -> Slice | None:
    """The approval policies that can apply to the call; None without any, or when finding them fails
    (`decide_hold` then finds them again, and fails closed)."""
    if state.approval is None:
        return None
    try:
        return state.approval.slices.for_request(
            prepared.tool.exposed, prepared.principal_target, prepared.resource_target
        )
    except _ENGINE_FAILURES:
        return None


def _joint_decision(
    state: PolicyState,
    prepared: PreparedCall,
    applicable: Slice,
    holding: Slice,
    entities: cedarpy.Entities,
    what: str,
) -> tuple[Decision | None, HoldDecision | None]:
    """The access decision (with the hold) from one Cedar evaluation of both sets (see `joint.py`).

    When that answer does not tell the sets apart, the decision is None and the access policies
    must be evaluated alone; the hold is still given when the answer settles it (an approval
    forbid matched), else None, and `decide_hold` evaluates the approval policies alone.
    """
    approval, joint = state.approval, state.joint
    if approval is None or joint is None:
        return None, None
    try:
        both = joint.for_slices(applicable, holding)
        result = cedarpy.is_authorized(prepared.request(both.context_keys), both.policies, entities)
    except _ENGINE_FAILURES:
        return None, None  # evaluated alone, each set reports the cause its own way
    decision, reasons, errors = _answer(result)
    if errors or decision not in (cedarpy.Decision.Allow, cedarpy.Decision.Deny):
        return None, None  # Cedar names the policy in error only in prose: each set is asked alone
    principal, action, approving = prepared.call.origin.principal, prepared.tool.exposed, holding.members
    if decision is cedarpy.Decision.Deny:
        # The reasons are every matching forbid of both sets.
        exempting = [policy_id for policy_id in reasons if policy_id in approving]
        if exempting:
            # Whether the access policies allow is hidden; the hold is what the approval set alone says.
            return None, _hold(approval, decision, exempting, (), principal, action, approving)
        return _decision(state, decision, reasons, (), principal, action, what), None  # never held: denied
    # No forbid of either set matched, and the reasons are every matching permit of both.
    permits = [policy_id for policy_id in reasons if policy_id not in approving]
    holds = [policy_id for policy_id in reasons if policy_id in approving]
    allowed = cedarpy.Decision.Allow if permits else cedarpy.Decision.Deny
    held = cedarpy.Decision.Allow if holds else cedarpy.Decision.Deny
    hold = _hold(approval, held, holds, (), principal, action, approving)
    return _decision(state, allowed, permits, (), principal, action, what, prepared, hold), None


def _answer(result: cedarpy.AuthzResult) -> tuple[cedarpy.Decision, Sequence[str], tuple[str, ...]]:
    """Cedar's decision, the policies that determined it and the evaluation errors, each read once."""
    diagnostics = result.diagnostics
    return result.decision, diagnostics.reasons, tuple(diagnostics.errors)


def _by_scopes(applicable: Slice) -> tuple[cedarpy.Decision, Sequence[str], tuple[str, ...]] | None:
    """What `_answer` would read from Cedar when the slice's scopes alone decide (see `slices.py`), else None."""
    verdict = applicable.verdict
    if verdict is None:
        return None
    return (cedarpy.Decision.Allow if verdict else cedarpy.Decision.Deny), applicable.determining, ()


def _error(exc: Exception) -> tuple[str, ...]:
    return (f"{type(exc).__name__}: {exc}",)


def _hold(
    approval: ApprovalSet,
    decision: cedarpy.Decision,
    reasons: Sequence[str],
    errors: tuple[str, ...],
    principal: Principal,
    action: str,
    members: Iterable[str],
) -> HoldDecision:
    """Held by the matching permits, exempted by a matching forbid; any evaluation error holds."""
    if errors or decision not in (cedarpy.Decision.Allow, cedarpy.Decision.Deny):
        return _held_on_error(approval, principal, action, members, errors or (f"Cedar returned {decision.value}",))
    if decision is cedarpy.Decision.Deny and not reasons:
        return NOT_HELD  # no approval policy matched: what most calls an approval policy covers get
    refs = approval.loaded.refs
    determining = _in_file_order(refs[i] for i in reasons if i in refs)
    if decision is cedarpy.Decision.Deny:
        return HoldDecision(False, None, tuple(p for p in determining if p.effect == "forbid"))
    permits = tuple(p for p in determining if p.effect == "permit")
    return HoldDecision(True, combine(approval.requirements[p.id] for p in permits), permits)


def _held_on_error(
    approval: ApprovalSet, principal: Principal, action: str, members: Iterable[str], errors: tuple[str, ...]
) -> HoldDecision:
    """Fail closed: held, needing what every approval permit that applies asks; not held when none applies."""
    refs = approval.loaded.refs
    permits = _in_file_order(refs[i] for i in members if i in refs and refs[i].effect == "permit")
    logger.warning(
        "approval policy evaluation failed; %s",
        "the call is held" if permits else "no approval permit applies, so the call is not held",
        extra={"agent": principal.agent, "action": action, "errors": list(errors)},
    )
    if not permits:
        return HoldDecision(False, None, (), errors)
    return HoldDecision(True, combine(approval.requirements[p.id] for p in permits), permits, errors)


def _in_file_order(policies: Iterable[PolicyRef]) -> tuple[PolicyRef, ...]:
    return tuple(sorted(policies, key=lambda policy: (policy.file, policy.line)))


def _unloaded(what: str) -> Decision:
    return deny(f"no access policies are loaded, so every request is denied (asked to {what})")


def _principal_target(state: PolicyState, principal: Principal) -> ScopeTarget:
    """The agent as the principal scopes see it; raises ValueError like `_entities` when it does not fit."""
    return ScopeTarget(AGENT, principal.agent, state.entities.principal_ancestors(principal))


def _resource_target(
    state: PolicyState, resource_type: str, resource_id: str, resource_entity: tuple[str, str] | None
) -> ScopeTarget:
    """The resource as the resource scopes see it, with the ancestry its entity has in Cedar."""
    return ScopeTarget(
        resource_type, resource_id, state.entities.resource_ancestors(resource_type, resource_id, resource_entity)
    )


def _entities(state: PolicyState, principal: Principal, resource_entity: tuple[str, str] | None) -> cedarpy.Entities:
    """Raises ValueError when the principal's or resource's entities do not fit the schema."""
    if resource_entity is None:
        return state.entities.for_principal(principal)
    return state.entities.for_resource(principal, *resource_entity)


def _current_shape(state: PolicyState, tool: ToolEntry) -> ToolShape | None:
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
    state: PolicyState,
    decision: cedarpy.Decision,
    reasons: Sequence[str],
    errors: tuple[str, ...],
    principal: Principal,
    action: str,
    what: str,
    prepared: PreparedCall | None = None,
    hold: HoldDecision | None = None,
) -> Decision:
    refs = state.loaded.refs
    determining = tuple(
        sorted(
            (refs[policy_id] for policy_id in reasons if policy_id in refs),
            key=lambda policy: (policy.file, policy.line),
        )
    )
    if decision is cedarpy.Decision.Allow and not errors:
        permits = tuple(policy for policy in determining if policy.effect == "permit")
        reason = next((p.annotations["reason"] for p in permits if p.annotations.get("reason")), None)
        if reason is None:
            reason = f"allowed by policy '{permits[0].id}'" if permits else "allowed"
        return allow(reason, permits, prepared, hold)
    forbids = tuple(policy for policy in determining if policy.effect == "forbid")
    if errors or decision is not cedarpy.Decision.Deny:
        return _failed(principal, action, errors or (f"Cedar returned {decision.value}",), forbids)
    if forbids:
        return deny(_forbid_reason(forbids, _forbidden(principal, what)), forbids)
    return deny(f"no access policy allows agent '{principal.agent}' to {what}")
