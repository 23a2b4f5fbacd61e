"""Policy slicing: deciding on the policies whose scopes can match gives the answers the whole set gives.

The engine hands Cedar only the policies whose action, principal and resource scopes can match
the request, with only the context attributes those policies read. These tests decide every
request of a small world twice, once sliced and once on the whole set with the whole context,
and require the same decision, the same determining policies and the same errors; and they pin
the scope forms that are easy to get wrong.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cedarpy
import pytest

from gateway.calls import Origin
from gateway.identity.principal import Principal
from gateway.policy import Decision, PolicyDecisions
from gateway.policy.entities import EntityStore, ancestors, parent_map
from gateway.policy.loader import policy_set
from gateway.policy.slices import PolicySlices, Slice, context_keys, scope_verdict, verdict_reasons
from policy_world import SALES, STRANGER, Loaded, load, make_catalog

SCOPES = """
@id("agent-eq")
permit (principal == Agent::"sales-bot", action in Action::"server:crm", resource);

@id("finance-server")
permit (principal in Role::"finance", action, resource in Server::"finance");

@id("audit-tools")
permit (principal is Agent in Role::"audit", action in Action::"call_tool", resource is Tool);

@id("ops-search")
permit (principal == Agent::"ops", action, resource == Tool::"crm__search_customers");

@id("sales-role-updates")
permit (principal in Role::"sales", action == Action::"crm__update_record", resource is Tool in Server::"crm");

@id("suspended")
forbid (principal in Role::"suspended", action, resource);

@id("overflowing-forbid")
forbid (principal, action == Action::"crm__search_customers", resource)
when { context.input has limit && context.input.limit * 9223372036854775807 > 10 };

@id("alice-pays")
permit (principal, action == Action::"finance__pay_invoice", resource)
when { principal has user && principal.user == User::"alice" };

@id("list-crm")
permit (principal is Agent, action == Action::"list_tools", resource in Server::"crm");

@id("sales-prompts")
permit (principal in Role::"sales", action == Action::"get_prompt", resource in Server::"crm");

@id("audit-explains-listings")
forbid (principal in Role::"audit", action == Action::"finance__list_invoices", resource)
unless { context has reasoning && context.time.hour >= 0 };

@id("audit-reads-finance")
permit (principal in Role::"audit", action == Action::"read_resource", resource in Server::"finance");
"""

PRINCIPALS = [
    SALES,
    STRANGER,
    Principal(agent="finance-bot", roles=("finance",)),
    Principal(agent="ops", roles=("ops",)),  # an agent and a role with the same id
    Principal(agent="sales", roles=()),  # named like a role it does not have
    Principal(agent="multi", roles=("sales", "finance", "suspended")),
    Principal(agent="auditor", roles=("audit",), user="alice"),
    Principal(agent="auditor-2", roles=("audit",), user="bob"),
]

CALLS: list[tuple[str, dict[str, Any]]] = [
    ("crm__search_customers", {"query": "acme"}),
    ("crm__search_customers", {"query": "acme", "limit": 2}),
    ("crm__update_record", {"customer_id": "C-1", "field": "status", "value": "active"}),
    ("finance__list_invoices", {}),
    ("finance__pay_invoice", {"invoice_id": "INV-1", "amount": 12.5}),
]

RESOURCES = [("crm", "crm://customers/C-1"), ("finance", "finance://invoices/1")]


def _world(policy_dir: Path) -> Loaded:
    catalog = make_catalog(
        prompts={"crm": [{"name": "account_summary"}], "finance": [{"name": "overdue_reminder"}]},
        resources={"finance": [{"name": "invoices", "uri": "finance://invoices/1"}]},
    )
    return load(policy_dir, SCOPES, catalog)


def _answers(loaded: Loaded) -> list[Any]:
    """Every decision and listing of the world, as comparable values."""
    decisions, catalog = loaded.decisions, loaded.catalog

    def facts(decision: Decision) -> tuple[Any, ...]:
        return (decision.allowed, decision.policy_ids, decision.reason, len(decision.errors))

    answers: list[Any] = []
    for principal in PRINCIPALS:
        origin = Origin(principal)
        for exposed, arguments in CALLS:
            answers.append(facts(loaded.call(principal, exposed, arguments)))
        answers.append(facts(loaded.call(principal, "finance__list_invoices", {}, reasoning="month end")))
        for connector in ("crm", "finance"):
            answers.append(facts(decisions.decide_list_tools(origin, connector)))
        for connector, uri in RESOURCES:
            answers.append(facts(loaded.read(principal, connector, uri)))
        for prompt in catalog.prompts():
            answers.append(facts(loaded.prompt(principal, prompt.exposed)))
        answers.append([tool.exposed for tool in decisions.visible_tools(origin, catalog.tools())])
        answers.append([prompt.exposed for prompt in decisions.visible_prompts(origin, catalog.prompts())])
        answers.append(decisions.visible_resources(origin, catalog.resources()))
    return answers


def test_sliced_decisions_equal_the_whole_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sliced = _answers(_world(tmp_path / "sliced"))

    def whole_set(self: PolicySlices, action: str, principal: object, resource: object) -> Slice:
        return Slice(policy_set(self._policies), context_keys=None)  # every policy, the whole context

    with monkeypatch.context() as patched:
        patched.setattr(PolicySlices, "for_request", whole_set)
        whole = _answers(_world(tmp_path / "whole"))

    assert sliced == whole
    allowed = sum(1 for answer in sliced if isinstance(answer, tuple) and answer[0])
    assert 10 < allowed < len(sliced) // 2  # the world exercises both answers, not one


def test_principal_scopes_tell_agents_roles_and_types_apart(tmp_path: Path) -> None:
    loaded = _world(tmp_path)
    update = CALLS[2]

    assert loaded.call(SALES, *update).policy_ids == ("agent-eq", "sales-role-updates")
    # An agent whose id is a role's id is not in that role.
    assert not loaded.call(Principal(agent="sales", roles=()), *update).allowed
    # `principal == Agent::"ops"` is the agent, not the role of the same id.
    assert loaded.call(Principal(agent="ops", roles=("ops",)), *CALLS[0]).policy_ids == ("ops-search",)
    assert not loaded.call(Principal(agent="someone", roles=("ops",)), *CALLS[0]).allowed
    # A forbid on one role applies whatever other roles permit.
    multi = loaded.call(Principal(agent="multi", roles=("sales", "finance", "suspended")), *update)
    assert not multi.allowed and multi.policy_ids == ("suspended",)


def test_resource_scopes_follow_the_server_a_tool_or_resource_belongs_to(tmp_path: Path) -> None:
    loaded = _world(tmp_path)
    finance = Principal(agent="finance-bot", roles=("finance",))
    auditor = Principal(agent="auditor", roles=("audit",), user="alice")

    assert loaded.call(finance, "finance__list_invoices", {}).policy_ids == ("finance-server",)
    assert not loaded.call(finance, *CALLS[0]).allowed
    assert loaded.read(auditor, "finance", "finance://invoices/1").allowed
    assert not loaded.read(auditor, "crm", "crm://customers/C-1").allowed
    # `resource is Tool` admits every tool; the user attribute still decides the payment.
    assert loaded.call(auditor, *CALLS[4]).policy_ids == ("audit-tools", "alice-pays")
    assert loaded.call(Principal(agent="auditor-2", roles=("audit",), user="bob"), *CALLS[4]).policy_ids == (
        "audit-tools",
    )


def test_an_erroring_policy_still_fails_the_call_closed_when_sliced(tmp_path: Path) -> None:
    loaded = _world(tmp_path)

    decision = loaded.call(SALES, *CALLS[1])

    assert not decision.allowed and decision.errors
    assert "overflowing-forbid" in decision.errors[0]


def test_many_agents_in_the_same_roles_share_one_slice(tmp_path: Path) -> None:
    loaded = _world(tmp_path)
    slices = loaded.store.current.slices  # type: ignore[union-attr]

    for index in range(200):
        assert loaded.call(Principal(agent=f"rep-{index}", roles=("sales",)), *CALLS[2]).allowed

    # The agents' own ids are named by no policy, so they all share one cached slice.
    assert slices.cached_request_shapes == 1


def test_auditors_must_explain_listing_invoices_and_the_context_they_need_reaches_cedar(tmp_path: Path) -> None:
    loaded = _world(tmp_path)
    auditor = Principal(agent="auditor", roles=("audit",), user="alice")

    denied = loaded.call(auditor, "finance__list_invoices", {})
    allowed = loaded.call(auditor, "finance__list_invoices", {}, reasoning="month end")

    assert not denied.allowed and denied.policy_ids == ("audit-explains-listings",)
    assert allowed.allowed and allowed.policy_ids == ("audit-tools",)


def test_a_denial_conceals_exactly_what_the_listing_hides(tmp_path: Path) -> None:
    loaded = _world(tmp_path)
    seen: set[tuple[bool, bool]] = set()

    for principal in PRINCIPALS:
        for exposed, arguments in CALLS:
            decision = loaded.call(principal, exposed, arguments)
            listed = bool(loaded.decisions.visible_tools(Origin(principal), (loaded.catalog.resolve_tool(exposed),)))
            assert decision.concealed is (not decision.allowed and not listed), (principal.agent, exposed)
            seen.add((decision.allowed, decision.concealed))
        for prompt in loaded.catalog.prompts():
            decision = loaded.prompt(principal, prompt.exposed)
            listed = bool(loaded.decisions.visible_prompts(Origin(principal), (prompt,)))
            assert decision.concealed is (not decision.allowed and not listed), (principal.agent, prompt.exposed)

    assert seen == {(True, False), (False, False), (False, True)}  # every kind of answer was given


def _keys(text: str) -> frozenset[str] | None:
    return context_keys(cedarpy.PolicySet.from_str(text).to_pst().static_policies.values())


def test_context_keys_are_the_attributes_read_and_whole_context_uses_keep_everything() -> None:
    assert _keys("permit (principal, action, resource);") == frozenset()
    assert _keys(
        "permit (principal, action, resource) when { context.input.amount > 1 && context has reasoning } "
        'unless { context["time"].hour < 8 };'
    ) == {"input", "reasoning", "time"}
    assert _keys("permit (principal, action, resource) when { context has session.id };") == {"session"}
    # `context` as a value (here inside a record) could be compared whole: nothing may be dropped.
    assert _keys("permit (principal, action, resource) when { {c: context}.c.input == {} };") is None


def _static(text: str, prefix: str) -> dict[str, Any]:
    return {
        f"{prefix}{key}": policy for key, policy in cedarpy.PolicySet.from_str(text).to_pst().static_policies.items()
    }


def test_scopes_settle_a_slice_only_without_conditions_and_name_what_cedar_would() -> None:
    permits = _static(
        'permit (principal in Role::"ops", action in Action::"call_tool", resource);\n'
        "permit (principal is Agent, action, resource is Tool);",
        "permits-",
    )
    with_forbid = {
        **permits,
        **_static('forbid (principal, action == Action::"x", resource in Server::"s");', "forbid-"),
    }

    assert scope_verdict(permits.values()) is True
    assert verdict_reasons(permits, True) == tuple(permits)
    assert scope_verdict(with_forbid.values()) is False
    assert verdict_reasons(with_forbid, False) == tuple(with_forbid)[2:]  # the forbid alone, as Cedar says
    assert scope_verdict(()) is False and verdict_reasons({}, False) == ()  # nothing applies: denied, no reason
    conditional = _static("permit (principal, action, resource) when { principal has user };", "conditional-")
    assert scope_verdict({**permits, **conditional}.values()) is None
    assert verdict_reasons(conditional, None) == ()
    # A scope form slicing does not know (here a template's slot) is kept for Cedar to decide.
    slot = cedarpy.PolicySet.from_str("permit (principal == ?principal, action, resource);").to_pst().templates
    assert scope_verdict([*permits.values(), *slot.values()]) is None


def test_the_slice_cache_starts_over_past_its_bound(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Request shapes that share cached policy sets still count against the bound."""
    monkeypatch.setattr("gateway.policy.slices.CACHED_REQUEST_SHAPES", 4)
    loaded = _world(tmp_path)
    slices = loaded.store.current.slices  # type: ignore[union-attr]

    for principal in PRINCIPALS:
        for exposed, arguments in CALLS:
            loaded.call(principal, exposed, arguments)
        assert slices.cached_request_shapes <= 4


def test_ancestry_is_read_transitively_from_the_entities_cedar_is_given() -> None:
    entities = [
        {"uid": {"type": "Agent", "id": "a"}, "attrs": {}, "parents": [{"type": "Role", "id": "ops"}]},
        {"uid": {"type": "Role", "id": "ops"}, "attrs": {}, "parents": [{"type": "Role", "id": "staff"}]},
        {"uid": {"type": "Role", "id": "staff"}, "attrs": {}, "parents": []},
    ]
    base = parent_map([{"uid": {"type": "Tool", "id": "t"}, "attrs": {}, "parents": [{"type": "Server", "id": "s"}]}])

    assert set(ancestors(("Agent", "a"), parent_map(entities), base)) == {("Role", "ops"), ("Role", "staff")}
    assert ancestors(("Tool", "t"), base) == (("Server", "s"),)
    assert ancestors(("Server", "s"), base) == ()


SCOPED_ONLY = """
@id("crm-for-sales")
permit (principal in Role::"sales", action in Action::"server:crm", resource);

@id("finance-server")
permit (principal in Role::"finance", action, resource in Server::"finance");

@id("no-destruction")
forbid (principal, action in Action::"destructive", resource);
"""


def test_scopes_alone_decide_listings_without_partial_evaluation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Partial evaluation costs time in proportion to the catalog; unconditional policies need none of it."""
    scoped = load(tmp_path / "scoped", SCOPED_ONLY, make_catalog())
    partial_calls: list[str] = []
    partial = PolicyDecisions._partial

    def counted(state: Any, principal: Principal, action: str, *rest: Any, **options: Any) -> Any:
        partial_calls.append(action)
        return partial(state, principal, action, *rest, **options)

    def listings(loaded: Loaded) -> list[list[str]]:
        decisions = loaded.decisions
        return [
            [tool.exposed for tool in decisions.visible_tools(Origin(p), loaded.catalog.tools())] for p in PRINCIPALS
        ]

    monkeypatch.setattr(PolicyDecisions, "_partial", staticmethod(counted))
    by_scopes = listings(scoped)
    assert partial_calls == []

    monkeypatch.setattr("gateway.policy.slices.scope_verdict", lambda policies: None)
    by_cedar = listings(load(tmp_path / "cedar", SCOPED_ONLY, make_catalog()))
    assert partial_calls  # this time Cedar answered
    assert by_scopes == by_cedar
    assert any(by_scopes) and not all(by_scopes)


def test_large_catalogs_judge_listings_on_the_request_entities_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past DELTA_BASE_ENTITIES, partial evaluation gets only the request's own entities: same answers."""
    whole = _answers(_world(tmp_path / "whole"))
    asked: list[int] = []
    for_listing = EntityStore.for_listing

    def counted(self: EntityStore, *args: Any) -> Any:
        handle = for_listing(self, *args)
        asked.append(len(handle) if handle is not None else 0)
        return handle

    monkeypatch.setattr("gateway.policy.entities.DELTA_BASE_ENTITIES", 0)
    monkeypatch.setattr(EntityStore, "for_listing", counted)
    assert _answers(_world(tmp_path / "small")) == whole
    assert asked and all(0 < size < 20 for size in asked)
