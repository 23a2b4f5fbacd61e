"""Requests the policies' scopes alone decide: the decision Cedar would give, without asking Cedar.

A seeded matrix of generated policy sets (permits and forbids over every scope form the gateway
knows, some with conditions, some with approval policies beside them) is loaded twice from the
same files: once as the gateway runs, once with `scope_verdict` answering None for every slice, so
that every decision is Cedar's. Every request of a small world (tool calls with good, invalid and
unrepresentable arguments, approved calls decided again, listings of tools, prompts, resource
reads, and the hold of every allowed call) must get equal answers from both: the same effect,
reason, policies in the same order, errors, invalid arguments and concealment. Each tool call is
also checked against Cedar on the whole set with the whole context, so the slices' claim that
every policy they hold applies is checked as well.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cedarpy
import pytest

from gateway.calls import Origin
from gateway.identity.principal import Principal
from gateway.policy import ApprovalContext, ArgumentLimits, PolicyEngine
from gateway.policy.context import call_context
from gateway.policy.entities import uid
from gateway.policy.loader import policy_set
from gateway.policy.schema import AGENT, TOOL
from gateway.policy.slices import ScopeTarget
from policy_world import Loaded, make_catalog, prompt_get, resource_read, tool_call, write_policy

NOW = datetime(2026, 11, 30, 14, 5, tzinfo=UTC)
APPROVED = ApprovalContext(granted=True, approvers=("alice",), decided_at=NOW)

PRINCIPALS = [
    Principal(agent="sales-bot", roles=("sales",)),
    Principal(agent="stranger", roles=()),
    Principal(agent="finance-bot", roles=("finance",)),
    Principal(agent="ops", roles=("ops",)),  # an agent and a role with the same id
    Principal(agent="sales", roles=()),  # named like a role it does not have
    Principal(agent="multi", roles=("sales", "finance", "suspended")),
    Principal(agent="auditor", roles=("audit",), user="alice"),
]

#: (tool, arguments, reasoning): good arguments, arguments that break the schema, and one Cedar cannot hold.
CALLS: list[tuple[str, dict[str, Any], str | None]] = [
    ("crm__search_customers", {"query": "acme"}, None),
    ("crm__search_customers", {"query": "acme", "limit": 2}, "looking up a customer"),
    ("crm__search_customers", {"query": "acme", "limit": "two"}, None),
    ("crm__search_customers", {"query": "acme", "limit": 2**70}, None),
    ("crm__update_record", {"customer_id": "C-1", "field": "status", "value": "active"}, None),
    ("finance__list_invoices", {}, "month end"),
    ("finance__pay_invoice", {"invoice_id": "INV-1", "amount": 12.5}, None),
    ("finance__pay_invoice", {"invoice_id": "INV-1"}, None),
]

PRINCIPAL_SCOPES = [
    "principal",
    'principal == Agent::"sales-bot"',
    'principal == Agent::"ops"',
    'principal in Role::"sales"',
    'principal in Role::"finance"',
    'principal in Role::"ops"',
    'principal in Role::"suspended"',
    "principal is Agent",
    'principal is Agent in Role::"audit"',
]

TOOL_RESOURCES = [
    "resource",
    'resource == Tool::"crm__search_customers"',
    'resource == Tool::"finance__pay_invoice"',
    'resource in Server::"crm"',
    'resource in Server::"finance"',
    "resource is Tool",
    'resource is Tool in Server::"finance"',
]

#: Action scopes, each with the resource scopes that fit the actions it names.
ACTION_SCOPES: list[tuple[str, list[str]]] = [
    ("action", ["resource", 'resource in Server::"crm"', "resource is Tool", 'resource == Tool::"crm__update_record"']),
    ('action == Action::"crm__search_customers"', TOOL_RESOURCES),
    ('action == Action::"finance__pay_invoice"', TOOL_RESOURCES),
    ('action in Action::"call_tool"', TOOL_RESOURCES),
    ('action in Action::"server:crm"', TOOL_RESOURCES),
    ('action in Action::"server:finance"', TOOL_RESOURCES),
    ('action in Action::"destructive"', TOOL_RESOURCES),
    ('action in Action::"read_only"', TOOL_RESOURCES),
    ('action in Action::"open_world"', TOOL_RESOURCES),
    ('action in [Action::"crm__update_record", Action::"finance__list_invoices"]', TOOL_RESOURCES),
    ('action in [Action::"crm__update_record", Action::"list_tools"]', ["resource", 'resource in Server::"crm"']),
    ('action == Action::"list_tools"', ["resource", 'resource == Server::"crm"', 'resource in Server::"finance"']),
    ('action == Action::"get_prompt"', ["resource", 'resource in Server::"crm"', "resource is Prompt"]),
    ('action == Action::"read_resource"', ["resource", 'resource in Server::"finance"', "resource is Resource"]),
]

CONDITIONS = [
    "when { context has reasoning }",
    "unless { principal has user }",
    "when { context.time.hour >= 12 }",
    'when { context.workflow.id == "" }',
]


def _policy(rng: random.Random, effect: str, policy_id: str, *, approval: bool = False) -> str:
    action, resources = rng.choice(ACTION_SCOPES)
    if approval:  # approval policies apply to tool calls only
        action, resources = rng.choice(ACTION_SCOPES[:10])
    lines = [f'@id("{policy_id}")']
    if approval and effect == "permit":
        lines.append('@approvers("role:managers")')
    if rng.random() < 0.3 and not (approval and effect == "forbid"):  # an exemption gives no reason
        lines.append(f'@reason("{policy_id} says so")')
    lines.append(f"{effect} ({rng.choice(PRINCIPAL_SCOPES)}, {action}, {rng.choice(resources)})")
    if rng.random() < (0.5 if approval else 0.15):
        lines.append(rng.choice(CONDITIONS))
    return "\n".join(lines) + ";\n"


@dataclass(frozen=True)
class World:
    access: str
    approval: str | None


def generated_world(seed: int) -> World:
    rng = random.Random(seed)
    access = [
        _policy(rng, "forbid" if rng.random() < 0.25 else "permit", f"p{index}") for index in range(rng.randint(1, 7))
    ]
    approval = None
    if seed % 3 == 0:
        approval = "\n".join(
            _policy(rng, "forbid" if rng.random() < 0.3 else "permit", f"h{index}", approval=True)
            for index in range(rng.randint(1, 3))
        )
    return World("\n".join(access), approval)


def _load(policy_dir: Path) -> Loaded:
    catalog = make_catalog(
        prompts={"crm": [{"name": "account_summary"}], "finance": [{"name": "overdue_reminder"}]},
        resources={"finance": [{"name": "invoices", "uri": "finance://invoices/1"}]},
    )
    engine = PolicyEngine(policy_dir)
    engine.store.load(catalog)
    return Loaded(engine, catalog)


def _answers(loaded: Loaded) -> Iterator[tuple[str, Any]]:
    """Every request of the world and its answer, in a fixed order."""
    decisions, catalog = loaded.decisions, loaded.catalog
    for principal in PRINCIPALS:
        origin = Origin(principal)
        for exposed, arguments, reasoning in CALLS:
            tool = catalog.resolve_tool(exposed)
            call = tool_call(principal, tool, arguments, reasoning=reasoning)
            decision = decisions.decide_call(call, tool, now=NOW)
            yield f"{principal.agent} calls {exposed} with {arguments}", decision
            if decision.allowed:
                yield "its hold", decisions.decide_hold(call, tool, now=NOW, decision=decision)
            yield "approved", decisions.decide_call(call, tool, now=NOW, approval=APPROVED)
        for connector in ("crm", "finance"):
            yield f"{principal.agent} lists {connector}", decisions.decide_list_tools(origin, connector, now=NOW)
        for prompt in catalog.prompts():
            yield (
                f"{principal.agent} gets {prompt.exposed}",
                decisions.decide_get_prompt(prompt_get(principal, prompt), prompt, now=NOW),
            )
        for resource in catalog.resources():
            yield (
                f"{principal.agent} reads {resource.exposed}",
                decisions.decide_read_resource(
                    resource_read(principal, resource.connector, resource.original), now=NOW
                ),
            )


def _settled_by_scopes(loaded: Loaded, principal: Principal, exposed: str) -> bool | None:
    """The verdict of the slice the engine decides this tool call on."""
    state = loaded.store.current
    assert state is not None
    return state.slices.for_request(
        exposed,
        ScopeTarget(AGENT, principal.agent, state.entities.principal_ancestors(principal)),
        ScopeTarget(TOOL, exposed, state.entities.resource_ancestors(TOOL, exposed, None)),
    ).verdict


def _whole_set(loaded: Loaded, principal: Principal, exposed: str, arguments: Any, reasoning: str | None) -> Any:
    """Cedar on every loaded access policy with the whole context; None when the context cannot be built."""
    state = loaded.store.current
    assert state is not None
    tool = loaded.catalog.resolve_tool(exposed)
    call = tool_call(principal, tool, arguments, reasoning=reasoning)
    context = call_context(state.schema.tools[exposed].input, call, now=NOW, limits=ArgumentLimits()).context
    if context is None:
        return None
    request = {
        "principal": uid(AGENT, principal.agent),
        "action": uid("Action", exposed),
        "resource": uid(TOOL, exposed),
        "context": context,
    }
    return cedarpy.is_authorized(request, policy_set(state.loaded.policies), state.entities.for_principal(principal))


SEEDS = range(60)


def test_scope_settled_decisions_equal_cedars_for_a_generated_matrix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settled = {True: 0, False: 0}
    evaluated = 0
    asked: list[object] = []
    evaluate = cedarpy.is_authorized

    def counted(*args: Any, **kwargs: Any) -> Any:
        asked.append(args[0])
        return evaluate(*args, **kwargs)

    for seed in SEEDS:
        world = generated_world(seed)
        policy_dir = tmp_path / f"world-{seed}"
        write_policy(policy_dir, "main.cedar", world.access)
        if world.approval is not None:
            write_policy(policy_dir, "holds.cedar", world.approval, folder="approval")
        fast = _load(policy_dir)
        with monkeypatch.context() as patched:
            patched.setattr("gateway.policy.slices.scope_verdict", lambda policies: None)
            by_cedar = list(_answers(_load(policy_dir)))
        with monkeypatch.context() as patched:
            patched.setattr(cedarpy, "is_authorized", counted)
            by_scopes = list(_answers(fast))

        for (what, answer), (_, cedars) in zip(by_scopes, by_cedar, strict=True):
            assert answer == cedars, f"seed {seed}: {what}\n{world.access}\n{world.approval}"

        for principal in PRINCIPALS:
            for exposed, arguments, reasoning in CALLS:
                decision = fast.call(principal, exposed, arguments, now=NOW, reasoning=reasoning)
                whole = _whole_set(fast, principal, exposed, arguments, reasoning)
                if whole is not None and not whole.diagnostics.errors:
                    assert (decision.allowed, set(decision.policy_ids)) == (
                        whole.allowed,
                        set(whole.diagnostics.reasons),
                    ), f"seed {seed}: {principal.agent} calls {exposed}\n{world.access}"
                verdict = _settled_by_scopes(fast, principal, exposed)
                if verdict is None:
                    evaluated += 1
                    continue
                settled[verdict] += 1
                if world.approval is None and whole is not None:
                    asked.clear()
                    with monkeypatch.context() as patched:
                        patched.setattr(cedarpy, "is_authorized", counted)
                        fast.call(principal, exposed, arguments, now=NOW, reasoning=reasoning)
                    assert asked == [], f"seed {seed}: Cedar was asked about {exposed} for {principal.agent}"

    # The matrix exercises every kind of answer: settled allows and denies, and Cedar's own.
    assert settled[True] > 200 and settled[False] > 200 and evaluated > 200, (settled, evaluated)


def test_a_forbid_settled_by_scopes_wins_and_gives_its_reason(tmp_path: Path) -> None:
    write_policy(
        tmp_path,
        "main.cedar",
        """
@id("sales-crm")
permit (principal in Role::"sales", action in Action::"server:crm", resource);

@id("sales-bot-search")
@reason("searching is what the sales bot is for")
permit (principal == Agent::"sales-bot", action == Action::"crm__search_customers", resource);

@id("no-destruction")
@reason("Nothing destructive for suspended agents.")
forbid (principal in Role::"suspended", action in Action::"destructive", resource);
""",
    )
    loaded = _load(tmp_path)
    sales = Principal(agent="sales-bot", roles=("sales",))
    suspended = Principal(agent="sales-bot", roles=("sales", "suspended"))
    update = {"customer_id": "C-1", "field": "status", "value": "active"}

    search = loaded.call(sales, "crm__search_customers", {"query": "acme"})
    allowed = loaded.call(sales, "crm__update_record", update)
    denied = loaded.call(suspended, "crm__update_record", update)

    assert _settled_by_scopes(loaded, sales, "crm__search_customers") is True
    assert search.allowed and search.policy_ids == ("sales-crm", "sales-bot-search")
    assert search.reason == "searching is what the sales bot is for"  # the first @reason in file order
    assert allowed.allowed and allowed.reason == "allowed by policy 'sales-crm'"
    assert _settled_by_scopes(loaded, suspended, "crm__update_record") is False
    assert not denied.allowed and denied.policy_ids == ("no-destruction",)
    assert denied.concealed  # never callable, so never listed: the agent is told the name is unknown
    assert denied.reason == "Nothing destructive for suspended agents."
    stranger = loaded.call(Principal(agent="stranger", roles=()), "crm__update_record", update)
    assert not stranger.allowed and stranger.policy_ids == () and stranger.concealed
    assert stranger.reason == "no access policy allows agent 'stranger' to call tool 'crm__update_record'"
    # Arguments Cedar cannot hold are still refused, though the scopes would allow any arguments.
    huge = loaded.call(sales, "crm__search_customers", {"query": "acme", "limit": 2**70})
    assert not huge.allowed and "64-bit" in huge.reason
