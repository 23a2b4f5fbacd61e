"""Approval policies: loaded with the access policies, their annotations checked, and the hold they decide."""

from __future__ import annotations

import dataclasses
import gc
import json
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cedarpy
import pytest

from gateway.errors import ConfigError, PolicyLoadError
from gateway.identity.principal import Principal
from gateway.policy import ApprovalContext, ArgumentLimits, HoldDecision, PolicyEngine
from gateway.policy import decisions as decisions_module
from gateway.policy import prepared as prepared_module
from gateway.policy.cases import run_policy_tests
from gateway.policy.context import call_context
from gateway.policy.hold import DEFAULT_EXPIRY, NOT_HELD, Requirement, combine
from policy_world import (
    DESTRUCTIVE,
    FINANCE,
    READ_ONLY,
    SALES,
    Loaded,
    make_catalog,
    tool,
    tool_call,
    write_policy,
)

ACCESS = """
@id("sales-crm")
permit (principal in Role::"sales", action in Action::"server:crm", resource);

@id("finance-pays")
permit (principal in Role::"finance", action in Action::"server:finance", resource);
"""

LARGE_PAYMENTS = """
@id("large-payments")
@approvers("role:finance-managers")
@reason("Payments over 1,000 need a finance manager.")
permit (principal, action == Action::"finance__pay_invoice", resource)
when { context.input.amount.greaterThan(decimal("1000.0")) };
"""

PAY = {"invoice_id": "INV-1", "amount": 1200.5}
SMALL_PAY = {"invoice_id": "INV-2", "amount": 20.0}
UPDATE = {"customer_id": "C-1", "field": "status", "value": "active"}


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    return tmp_path / "policies"


def load_with(policy_dir: Path, approval: str | None, *, access: str = ACCESS) -> Loaded:
    write_policy(policy_dir, "main.cedar", access)
    if approval is not None:
        write_policy(policy_dir, "holds.cedar", approval, folder="approval")
    catalog = make_catalog()
    engine = PolicyEngine(policy_dir)
    engine.store.load(catalog)
    return Loaded(engine, catalog)


def load_error(policy_dir: Path, approval: str) -> str:
    with pytest.raises(PolicyLoadError) as caught:
        load_with(policy_dir, approval)
    return str(caught.value)


# -- loading ---------------------------------------------------------------------------------


def test_approval_policies_load_with_the_access_policies_and_are_counted(policy_dir: Path) -> None:
    loaded = load_with(policy_dir, LARGE_PAYMENTS)

    status = loaded.store.status
    assert status.loaded and status.policy_count == 2 and status.approval_count == 1
    assert [ref.id for ref in loaded.store.approval_policies()] == ["large-payments"]
    assert [ref.id for ref in loaded.store.policies()] == ["sales-crm", "finance-pays"]


def test_without_an_approval_directory_nothing_is_held_and_nothing_changes(policy_dir: Path) -> None:
    loaded = load_with(policy_dir, None)

    assert loaded.store.status.approval_count == 0 and loaded.store.approval_policies() == ()
    assert loaded.store.current is not None and loaded.store.current.approval is None


def test_an_approval_policy_is_validated_against_the_same_schema_with_file_and_line(policy_dir: Path) -> None:
    message = load_error(
        policy_dir,
        """
@approvers("role:finance-managers")
permit (principal, action == Action::"finance__pay_invoice", resource)
when { context.input.amout.greaterThan(decimal("1000.0")) };
""",
    )

    assert "approval/holds.cedar:4" in message and "amout" in message


def test_a_failing_approval_set_keeps_the_whole_previous_state(policy_dir: Path) -> None:
    loaded = load_with(policy_dir, LARGE_PAYMENTS)
    before = loaded.store.current

    write_policy(policy_dir, "holds.cedar", "permit (principal, action, resource", folder="approval")
    assert not loaded.store.reload_if_changed(loaded.catalog)
    assert loaded.store.current is before
    assert "holds.cedar:1" in (loaded.store.status.last_error or "")

    write_policy(policy_dir, "holds.cedar", LARGE_PAYMENTS, folder="approval")
    write_policy(policy_dir, "main.cedar", 'permit (principal, action == Action::"nope", resource);')
    assert not loaded.store.reload_if_changed(loaded.catalog)
    assert loaded.store.current is before and loaded.store.status.approval_count == 1


def test_a_new_approval_file_is_noticed_by_the_reload_poll(policy_dir: Path) -> None:
    loaded = load_with(policy_dir, None)

    write_policy(policy_dir, "holds.cedar", LARGE_PAYMENTS, folder="approval")

    assert loaded.store.reload_if_changed(loaded.catalog)
    assert loaded.store.status.approval_count == 1


def test_ids_are_unique_across_access_and_approval_policies(policy_dir: Path) -> None:
    message = load_error(policy_dir, LARGE_PAYMENTS.replace('@id("large-payments")', '@id("sales-crm")'))

    assert "approval/holds.cedar:2: policy id 'sales-crm' is already used" in message


def test_approval_policies_without_an_id_are_named_apart_from_access_ones(policy_dir: Path) -> None:
    loaded = load_with(
        policy_dir,
        """@approvers("user:alice")
permit (principal, action == Action::"crm__update_record", resource);
""",
        access=ACCESS.replace('@id("sales-crm")\n', "").replace('@id("finance-pays")\n', ""),
    )

    assert [ref.id for ref in loaded.store.approval_policies()] == ["approval/holds:1"]
    assert [ref.id for ref in loaded.store.policies()] == ["main:1", "main:2"]


# -- annotations -----------------------------------------------------------------------------

_SCOPE = 'permit (principal, action == Action::"crm__update_record", resource);'


@pytest.mark.parametrize(
    ("annotations", "line", "problem"),
    [
        ('@id("x")\n', 2, "@approvers is required on an approval permit"),
        ('@approvers("")\n', 2, 'is not "role:<role>" or "user:<user id>"'),
        ('@approvers("team:ops")\n', 2, "'team:ops' is not"),
        ('@approvers("role:")\n', 2, "'role:' is not"),
        ('@approvers("role:ops")\n@quorum("0")\n', 3, "@quorum must be a whole number of at least 1"),
        ('@approvers("role:ops")\n@quorum("two")\n', 3, "@quorum must be a whole number"),
        ('@approvers("user:alice,user:bob")\n@quorum("3")\n', 3, "names only 2 user(s)"),
        ('@approvers("role:ops")\n@expires("1800")\n', 3, "@expires must be a positive ISO 8601 duration"),
        ('@approvers("role:ops")\n@expires("PT0S")\n', 3, "@expires must be a positive ISO 8601 duration"),
        ('@approvers("role:ops")\n@expires("soon")\n', 3, "@expires must be a positive ISO 8601 duration"),
        ('@approvers("role:ops")\n@reason(" ")\n', 3, "@reason is empty"),
        ('@approvers("role:ops")\n@escalate_after("PT5M")\n', 3, "@escalate_after needs @escalate_to"),
        ('@approvers("role:ops")\n@escalate_to("role:cfo")\n', 3, "@escalate_to needs @escalate_after"),
        (
            '@approvers("role:ops")\n@expires("PT10M")\n@escalate_after("PT10M")\n@escalate_to("role:cfo")\n',
            4,
            "must be shorter than the hold's expiry",
        ),
        ('@approvers("role:ops")\n@escalate_after("PT2H")\n@escalate_to("role:cfo")\n', 3, "(1:00:00)"),
        ('@approvers("role:ops")\n@escalate_after("PT5M")\n@escalate_to("cfo")\n', 4, "'cfo' is not"),
        ('@approvers("role:ops")\n@qourum("2")\n', 3, "unknown annotation @qourum"),
    ],
)
def test_a_bad_annotation_is_a_load_error_at_its_line(
    policy_dir: Path, annotations: str, line: int, problem: str
) -> None:
    message = load_error(policy_dir, "\n" + annotations + _SCOPE + "\n")

    assert f"approval/holds.cedar:{line}: approval policy" in message
    assert problem in message


@pytest.mark.parametrize("annotation", ['@approvers("role:ops")', '@reason("why")', '@quorum("2")'])
def test_an_approval_forbid_takes_no_requirement(policy_dir: Path, annotation: str) -> None:
    name = annotation[1 : annotation.index("(")]
    message = load_error(policy_dir, f"\n{annotation}\nforbid (principal, action, resource);\n")

    assert "approval/holds.cedar:2: approval policy 'approval/holds:1': an approval forbid exempts" in message
    assert f"takes no @{name}" in message


def test_every_bad_annotation_is_reported_at_once(policy_dir: Path) -> None:
    message = load_error(
        policy_dir, f'@quorum("0")\n@approvers("role:a")\n{_SCOPE}\n\n@approvers("team:b")\n{_SCOPE}\n'
    )

    assert "holds.cedar:1:" in message and "holds.cedar:5:" in message


def test_annotations_become_the_policy_requirement(policy_dir: Path) -> None:
    loaded = load_with(
        policy_dir,
        """
@id("full")
@approvers(" user:bob , role:finance-managers,user:bob")
@quorum("2")
@expires("PT30M")
@reason("Big money.")
@escalate_after("PT10M")
@escalate_to("role:cfo")
permit (principal, action == Action::"finance__pay_invoice", resource);

@id("plain")
@approvers("user:alice")
permit (principal, action == Action::"crm__update_record", resource);

@id("exempt")
forbid (principal in Role::"sales", action == Action::"crm__update_record", resource);
""",
    )

    state = loaded.store.current
    assert state is not None and state.approval is not None
    assert dict(state.approval.requirements) == {
        "full": Requirement(
            approvers=("role:finance-managers", "user:bob"),
            quorum=2,
            expires_in=timedelta(minutes=30),
            reason="Big money.",
            reasons=("Big money.",),
            escalate_after=timedelta(minutes=10),
            escalate_to=("role:cfo",),
        ),
        "plain": Requirement(approvers=("user:alice",), quorum=1, expires_in=DEFAULT_EXPIRY),
    }
    assert DEFAULT_EXPIRY == timedelta(hours=1)


# -- combining -------------------------------------------------------------------------------


def test_requirements_combine_the_strict_way() -> None:
    first = Requirement(("role:ops", "user:bob"), 1, timedelta(hours=2), "First.", ("First.",))
    second = Requirement(
        ("role:finance",), 3, timedelta(minutes=20), "Second.", ("Second.",), timedelta(minutes=5), ("role:cfo",)
    )
    third = Requirement(
        ("role:ops",), 2, timedelta(hours=1), "First.", ("First.",), timedelta(minutes=15), ("user:ceo", "role:cfo")
    )

    combined = combine([first, second, third])

    assert combined == Requirement(
        approvers=("role:finance", "role:ops", "user:bob"),
        quorum=3,
        expires_in=timedelta(minutes=20),
        reason="First.",
        reasons=("First.", "Second."),
        escalate_after=timedelta(minutes=5),
        escalate_to=("role:cfo", "user:ceo"),
    )
    assert combine([]) is None
    assert combine([first]) == first


# -- the hold decision -----------------------------------------------------------------------


NOW = datetime(2026, 11, 30, 15, 0, tzinfo=UTC)


def hold(loaded: Loaded, principal: Principal, exposed: str, arguments: dict[str, Any]) -> HoldDecision:
    """The hold decided on the access decision's own request, checked against one built again."""
    tool = loaded.catalog.resolve_tool(exposed)
    call = tool_call(principal, tool, arguments)
    decision = loaded.decisions.decide_call(call, tool, now=NOW)
    assert decision.allowed  # decide_hold is only asked about allowed calls
    assert decision.prepared is not None
    held = loaded.decisions.decide_hold(call, tool, decision=decision)
    assert loaded.decisions.decide_hold(call, tool, now=NOW) == held
    return held


def test_a_matching_approval_permit_holds_the_call(policy_dir: Path) -> None:
    loaded = load_with(policy_dir, LARGE_PAYMENTS)

    held = hold(loaded, FINANCE, "finance__pay_invoice", PAY)
    small = hold(loaded, FINANCE, "finance__pay_invoice", SMALL_PAY)

    assert held.held and held.errors == ()
    assert held.policy_ids == ("large-payments",)
    assert held.policies[0].location.endswith("approval/holds.cedar:2")
    assert held.requirement == Requirement(
        approvers=("role:finance-managers",),
        reason="Payments over 1,000 need a finance manager.",
        reasons=("Payments over 1,000 need a finance manager.",),
    )
    assert "role:finance-managers" in held.explain() and "holds.cedar:2" in held.explain()
    assert small == HoldDecision(held=False)
    assert not hold(loaded, SALES, "crm__update_record", UPDATE).held


def test_an_approval_forbid_exempts_whatever_permit_matches(policy_dir: Path) -> None:
    loaded = load_with(
        policy_dir,
        LARGE_PAYMENTS
        + """
@id("treasury-exempt")
forbid (principal == Agent::"treasury-bot", action in Action::"server:finance", resource);
""",
    )
    treasury = Principal(agent="treasury-bot", roles=("finance",))

    exempt = hold(loaded, treasury, "finance__pay_invoice", PAY)

    assert not exempt.held and exempt.requirement is None
    assert exempt.policy_ids == ("treasury-exempt",)
    assert hold(loaded, FINANCE, "finance__pay_invoice", PAY).held


def test_several_holding_permits_combine_into_one_requirement(policy_dir: Path) -> None:
    write_policy(
        policy_dir,
        "a_destructive.cedar",
        """
@id("destructive-needs-ops")
@approvers("role:ops,user:alice")
@expires("PT2H")
@reason("Destructive calls need ops.")
@escalate_after("PT30M")
@escalate_to("role:ops-leads")
permit (principal, action in Action::"destructive", resource);
""",
        folder="approval",
    )
    loaded = load_with(
        policy_dir,
        LARGE_PAYMENTS.replace(
            '@approvers("role:finance-managers")', '@approvers("user:bob,user:carol")\n@quorum("2")'
        ).replace("@reason", '@expires("PT45M")\n@escalate_after("PT15M")\n@escalate_to("role:cfo")\n@reason'),
    )

    held = hold(loaded, FINANCE, "finance__pay_invoice", PAY)

    assert held.policy_ids == ("destructive-needs-ops", "large-payments")  # file order: a_destructive, holds
    assert held.requirement == Requirement(
        approvers=("role:ops", "user:alice", "user:bob", "user:carol"),
        quorum=2,
        expires_in=timedelta(minutes=45),
        reason="Destructive calls need ops.",
        reasons=("Destructive calls need ops.", "Payments over 1,000 need a finance manager."),
        escalate_after=timedelta(minutes=15),
        escalate_to=("role:cfo", "role:ops-leads"),
    )
    only_ops = hold(loaded, FINANCE, "finance__pay_invoice", SMALL_PAY)
    assert only_ops.policy_ids == ("destructive-needs-ops",)
    assert only_ops.requirement is not None and only_ops.requirement.quorum == 1


TRANSFER_TOOLS = {
    "bank": [
        tool(
            "transfer",
            {"account": {"type": "string"}, "amount": {"type": "number"}, "cents": {"type": "integer"}},
            required=["account"],
            annotations=DESTRUCTIVE,
        ),
        tool("balance", {"account": {"type": "string"}}, required=["account"], annotations=READ_ONLY),
    ]
}


def test_the_missing_attribute_trap_is_refused_at_load(policy_dir: Path) -> None:
    """Reading an optional argument without `has` could fail for calls that omit it: never loaded."""
    write_policy(policy_dir, "main.cedar", 'permit (principal in Role::"finance", action, resource);')
    write_policy(
        policy_dir,
        "holds.cedar",
        """
@approvers("role:treasury")
permit (principal, action == Action::"bank__transfer", resource)
when { context.input.amount.greaterThan(decimal("1000.0")) };
""",
        folder="approval",
    )

    with pytest.raises(PolicyLoadError, match=r"approval/holds\.cedar:4: .*optional attribute `input.amount`"):
        PolicyEngine(policy_dir).store.load(make_catalog(TRANSFER_TOOLS))


def test_an_evaluation_error_holds_with_every_applicable_permit(policy_dir: Path, caplog: Any) -> None:
    write_policy(policy_dir, "main.cedar", 'permit (principal in Role::"finance", action, resource);')
    write_policy(
        policy_dir,
        "holds.cedar",
        """
@id("large-transfers")
@approvers("role:treasury")
@reason("Large transfers need treasury.")
permit (principal, action == Action::"bank__transfer", resource)
when { context.input has cents && context.input.cents * 1000000000000 > 1000000000000000 };

@id("flagged-accounts")
@approvers("user:auditor")
@expires("PT20M")
permit (principal, action == Action::"bank__transfer", resource)
when { context.input.account == "flagged" };

@id("balances-by-sales")
@approvers("role:sales-leads")
permit (principal in Role::"sales", action == Action::"bank__balance", resource);
""",
        folder="approval",
    )
    catalog = make_catalog(TRANSFER_TOOLS)
    engine = PolicyEngine(policy_dir)
    engine.store.load(catalog)
    loaded = Loaded(engine, catalog)

    trap = hold(loaded, FINANCE, "bank__transfer", {"account": "A-1", "cents": 10**8})  # the product overflows

    assert trap.held and trap.errors
    assert trap.policy_ids == ("large-transfers", "flagged-accounts")
    assert trap.requirement == Requirement(
        approvers=("role:treasury", "user:auditor"),
        expires_in=timedelta(minutes=20),
        reason="Large transfers need treasury.",
        reasons=("Large transfers need treasury.",),
    )
    assert "approval policy evaluation failed" in caplog.text
    assert hold(loaded, FINANCE, "bank__transfer", {"account": "A-1", "cents": 5000}).policy_ids == ("large-transfers",)
    assert not hold(loaded, FINANCE, "bank__transfer", {"account": "A-1", "cents": 5}).held
    assert not hold(loaded, FINANCE, "bank__balance", {"account": "A-1"}).held


def test_without_approval_policies_deciding_a_hold_asks_cedar_nothing(
    policy_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = load_with(policy_dir, None)
    tool_entry = loaded.catalog.resolve_tool("finance__pay_invoice")
    call = tool_call(FINANCE, tool_entry, PAY)

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("Cedar was asked")

    monkeypatch.setattr(cedarpy, "is_authorized", refuse)

    assert loaded.decisions.decide_hold(call, tool_entry) is NOT_HELD


def test_a_tool_no_approval_policy_names_is_not_held_without_asking_cedar(
    policy_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = load_with(policy_dir, LARGE_PAYMENTS)
    tool_entry = loaded.catalog.resolve_tool("crm__update_record")
    call = tool_call(SALES, tool_entry, UPDATE)

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("Cedar was asked")

    monkeypatch.setattr(cedarpy, "is_authorized", refuse)

    assert loaded.decisions.decide_hold(call, tool_entry) is NOT_HELD


def test_access_decisions_are_the_same_with_approval_policies(policy_dir: Path) -> None:
    plain = load_with(policy_dir / "plain", None)
    holding = load_with(policy_dir / "holding", LARGE_PAYMENTS)

    for principal, exposed, arguments in (
        (FINANCE, "finance__pay_invoice", PAY),
        (SALES, "finance__pay_invoice", PAY),
        (SALES, "crm__update_record", UPDATE),
    ):
        before, after = plain.call(principal, exposed, arguments), holding.call(principal, exposed, arguments)
        assert (before.effect, before.reason, before.policy_ids) == (after.effect, after.reason, after.policy_ids)


# -- the access decision's request and answer, reused for the hold ---------------------------


def counting_call_context(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Each tool name `call_context` builds a context for, from now on."""
    built: list[str] = []

    def counted(input_type: Any, call: Any, **options: Any) -> Any:
        built.append(call.name)
        return call_context(input_type, call, **options)

    monkeypatch.setattr(decisions_module, "call_context", counted)
    return built


def recording_cedar(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The context of each request Cedar is asked to decide, from now on."""
    sent: list[Any] = []
    evaluate = cedarpy.is_authorized

    def recording(request: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        sent.append(request["context"])
        return evaluate(request, *args, **kwargs)

    monkeypatch.setattr(cedarpy, "is_authorized", recording)
    return sent


#: ACCESS with a condition that reads nothing: its scopes no longer decide alone, so Cedar evaluates it.
CONDITIONAL_ACCESS = ACCESS.replace(";", "\nwhen { true };")

#: (access policies, Cedar evaluations while deciding the access): with conditions, the access and
#: approval sets are evaluated at once; when the access scopes decide, only the hold asks Cedar.
ONE_EVALUATION = [(CONDITIONAL_ACCESS, 1), (ACCESS, 0)]


@pytest.mark.parametrize(("access", "asked_by_access"), ONE_EVALUATION)
@pytest.mark.parametrize(("arguments", "held"), [(PAY, True), (SMALL_PAY, False)])
def test_one_cedar_evaluation_decides_the_access_and_the_hold(
    policy_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    arguments: dict[str, Any],
    held: bool,
    access: str,
    asked_by_access: int,
) -> None:
    loaded = load_with(policy_dir, LARGE_PAYMENTS, access=access)
    tool_entry = loaded.catalog.resolve_tool("finance__pay_invoice")
    call = tool_call(FINANCE, tool_entry, arguments)
    built = counting_call_context(monkeypatch)
    sent = recording_cedar(monkeypatch)

    decision = loaded.decisions.decide_call(call, tool_entry)
    asked_to_decide = len(sent)
    hold_decision = loaded.decisions.decide_hold(call, tool_entry, decision=decision)

    assert decision.allowed and decision.policy_ids == ("finance-pays",)
    assert hold_decision.held is held and hold_decision.policy_ids == (("large-payments",) if held else ())
    assert built == ["finance__pay_invoice"]
    assert asked_to_decide == asked_by_access
    # The attributes either set reads (only the approval policy reads any), written as `json.dumps` writes them.
    amount = {"__extn": {"fn": "decimal", "arg": f"{arguments['amount']:.4f}"}}
    assert sent == [json.dumps({"input": {"invoice_id": arguments["invoice_id"], "amount": amount}})]


@pytest.mark.parametrize(
    ("access", "asked"),
    [
        (CONDITIONAL_ACCESS, (2, 2)),  # both sets, then the access set; the hold asks nothing
        (ACCESS, (0, 1)),  # the access scopes decide; the hold asks the approval set alone
    ],
)
def test_an_approval_forbid_settles_the_hold_and_the_access_policies_are_asked_alone(
    policy_dir: Path, monkeypatch: pytest.MonkeyPatch, access: str, asked: tuple[int, int]
) -> None:
    loaded = load_with(policy_dir, LARGE_PAYMENTS + TREASURY_EXEMPT, access=access)
    tool_entry = loaded.catalog.resolve_tool("finance__pay_invoice")
    call = tool_call(TREASURY, tool_entry, PAY)
    sent = recording_cedar(monkeypatch)

    decision = loaded.decisions.decide_call(call, tool_entry)
    asked_to_decide = len(sent)
    exempt = loaded.decisions.decide_hold(call, tool_entry, decision=decision)

    assert decision.allowed and not exempt.held and exempt.policy_ids == ("treasury-exempt",)
    assert decision.policy_ids == ("finance-pays",)
    assert (asked_to_decide, len(sent)) == asked


@pytest.mark.parametrize(
    ("access", "asked"),
    [
        (CONDITIONAL_ACCESS, (2, 3)),  # both sets; the access set; then the approval set
        (ACCESS, (0, 1)),  # the access scopes decide; then the approval set
    ],
)
def test_when_a_policy_errs_each_set_is_evaluated_alone_on_the_same_request(
    policy_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: Any, access: str, asked: tuple[int, int]
) -> None:
    loaded = load_with(policy_dir, OVERFLOWING_HOLD, access=access)
    tool_entry = loaded.catalog.resolve_tool("finance__pay_invoice")
    call = tool_call(FINANCE, tool_entry, SMALL_PAY)
    built = counting_call_context(monkeypatch)
    sent = recording_cedar(monkeypatch)

    decision = loaded.decisions.decide_call(call, tool_entry)
    asked_to_decide = len(sent)
    held = loaded.decisions.decide_hold(call, tool_entry, decision=decision)

    assert decision.allowed and decision.errors == () and decision.policy_ids == ("finance-pays",)
    assert held.held and held.errors and held.policy_ids == ("overflowing",)  # fails closed
    assert "approval policy evaluation failed" in caplog.text
    assert (asked_to_decide, len(sent)) == asked
    assert built == ["finance__pay_invoice"]


TREASURY = Principal(agent="treasury-bot", roles=("finance",))

TREASURY_EXEMPT = """
@id("treasury-exempt")
forbid (principal == Agent::"treasury-bot", action in Action::"server:finance", resource);
"""

#: Errs for every call: the product overflows a Long.
OVERFLOWING_HOLD = """
@id("overflowing")
@approvers("role:finance-managers")
permit (principal, action == Action::"finance__pay_invoice", resource)
when { context.input.amount.greaterThan(decimal("1.0")) && 9223372036854775807 * 2 > 0 };
"""

HUGE_PAYMENTS_FORBIDDEN = """
@id("no-huge-payments")
@reason("Payments over 5,000 are not made by agents.")
forbid (principal, action == Action::"finance__pay_invoice", resource)
when { context.input.amount.greaterThan(decimal("5000.0")) };
"""

OVERFLOWING_ACCESS = """
@id("overflowing-access")
permit (principal in Role::"sales", action == Action::"finance__pay_invoice", resource)
when { context.input.amount.greaterThan(decimal("1.0")) && 9223372036854775807 * 2 > 0 };
"""

SALES_HOLDS = """
@id("sales-pay-holds")
@approvers("role:finance-managers")
permit (principal in Role::"sales", action == Action::"finance__pay_invoice", resource);
"""

HUGE_PAY = {"invoice_id": "INV-3", "amount": 9000.0}


@pytest.mark.parametrize(
    "access", [ACCESS, CONDITIONAL_ACCESS, ACCESS + HUGE_PAYMENTS_FORBIDDEN, ACCESS + OVERFLOWING_ACCESS]
)
@pytest.mark.parametrize(
    "approval",
    [LARGE_PAYMENTS, LARGE_PAYMENTS + TREASURY_EXEMPT, OVERFLOWING_HOLD, SALES_HOLDS + TREASURY_EXEMPT],
)
def test_with_approval_policies_every_access_decision_and_hold_is_what_each_set_says_alone(
    tmp_path: Path, access: str, approval: str
) -> None:
    """Whatever one evaluation of both sets answers, the decision is that of the access policies
    alone, and the hold that of the approval policies alone."""
    plain = load_with(tmp_path / "plain", None, access=access)
    holding = load_with(tmp_path / "holding", approval, access=access)

    for principal in (FINANCE, SALES, TREASURY):
        for arguments in (SMALL_PAY, PAY, HUGE_PAY):
            alone = plain.call(principal, "finance__pay_invoice", arguments, now=NOW)
            tool_entry = holding.catalog.resolve_tool("finance__pay_invoice")
            call = tool_call(principal, tool_entry, arguments)
            decision = holding.decisions.decide_call(call, tool_entry, now=NOW)
            assert (decision.effect, decision.reason, decision.policy_ids, decision.errors) == (
                alone.effect,
                alone.reason,
                alone.policy_ids,
                alone.errors,
            ), (principal.agent, arguments)
            if decision.allowed:
                assert holding.decisions.decide_hold(call, tool_entry, decision=decision) == (
                    holding.decisions.decide_hold(call, tool_entry, now=NOW)
                ), (principal.agent, arguments)


def test_a_decision_made_on_the_previous_set_is_not_evaluated_again(
    policy_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reload between the decision and the hold: the hold builds the request on the set in force."""
    loaded = load_with(policy_dir, LARGE_PAYMENTS)
    tool_entry = loaded.catalog.resolve_tool("finance__pay_invoice")
    call = tool_call(FINANCE, tool_entry, SMALL_PAY)
    decision = loaded.decisions.decide_call(call, tool_entry)
    assert not loaded.decisions.decide_hold(call, tool_entry, decision=decision).held

    write_policy(policy_dir, "holds.cedar", LARGE_PAYMENTS.replace("1000.0", "10.0"), folder="approval")
    assert loaded.store.reload_if_changed(loaded.catalog)
    built = counting_call_context(monkeypatch)
    gc.collect()

    assert decision.prepared is not None and decision.prepared.state() is None  # the decision kept no old set alive
    assert loaded.decisions.decide_hold(call, tool_entry, decision=decision).held
    assert built == ["finance__pay_invoice"]


def test_a_decision_for_another_call_is_not_evaluated_for_this_one(policy_dir: Path) -> None:
    loaded = load_with(policy_dir, LARGE_PAYMENTS)
    tool_entry = loaded.catalog.resolve_tool("finance__pay_invoice")
    small, large = tool_call(FINANCE, tool_entry, SMALL_PAY), tool_call(FINANCE, tool_entry, PAY)

    assert loaded.decisions.decide_hold(
        large, tool_entry, decision=loaded.decisions.decide_call(small, tool_entry)
    ).held


def test_only_an_allowed_call_not_yet_approved_carries_its_request(policy_dir: Path) -> None:
    loaded = load_with(policy_dir, LARGE_PAYMENTS)
    tool_entry = loaded.catalog.resolve_tool("finance__pay_invoice")
    call = tool_call(FINANCE, tool_entry, PAY)

    allowed = loaded.decisions.decide_call(call, tool_entry)
    approved = loaded.decisions.decide_call(call, tool_entry, approval=APPROVED)  # about to run: never held again
    denied = loaded.decisions.decide_call(tool_call(SALES, tool_entry, PAY), tool_entry)

    assert allowed.prepared is not None and approved.prepared is None and denied.prepared is None
    assert allowed == approved and "prepared" not in repr(allowed)  # not part of the decision's value


def test_each_context_attribute_is_written_once_whatever_reads_it(
    policy_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = load_with(policy_dir, LARGE_PAYMENTS)
    tool_entry = loaded.catalog.resolve_tool("finance__pay_invoice")
    arguments = {"invoice_id": 'INV-1 "Zürich" \\ ✓', "amount": 1200.5}
    decision = loaded.decisions.decide_call(
        tool_call(FINANCE, tool_entry, arguments, request_id=7), tool_entry, now=NOW
    )
    assert decision.prepared is not None
    prepared = dataclasses.replace(decision.prepared, _texts={})  # as the access decision first had it
    context = dict(prepared.context)
    written: list[Any] = []
    dumps = json.dumps

    def counted(value: Any) -> str:
        written.append(value)
        return dumps(value)

    monkeypatch.setattr(prepared_module.json, "dumps", counted)
    prepared_module._member.cache_clear()

    for keys in (frozenset({"input"}), frozenset({"time", "input"}), None, frozenset(), frozenset({"input"})):
        narrowed = context if keys is None else {key: value for key, value in context.items() if key in keys}
        assert prepared.context_json(keys) == dumps(narrowed)
    assert sorted(map(str, written)) == sorted(map(str, [*context.keys(), *context.values()]))


# -- context.approval ------------------------------------------------------------------------

APPROVED = ApprovalContext(granted=True, approvers=("alice", "bob"), decided_at=datetime(2026, 11, 30, 14, 5))


def test_the_approval_is_in_the_context_only_when_given(policy_dir: Path) -> None:
    loaded = load_with(policy_dir, LARGE_PAYMENTS)
    state = loaded.store.current
    assert state is not None
    tool_entry = loaded.catalog.resolve_tool("finance__pay_invoice")
    shape = state.schema.tools[tool_entry.exposed]
    call = tool_call(FINANCE, tool_entry, PAY, request_id=7)
    now = datetime(2026, 11, 30, 15, 0, tzinfo=UTC)

    without = call_context(shape.input, call, now=now, limits=ArgumentLimits())
    with_approval = call_context(shape.input, call, now=now, limits=ArgumentLimits(), approval=APPROVED)

    assert without.context is not None and with_approval.context is not None
    assert json.dumps(without.context, sort_keys=True) == json.dumps(
        {
            "input": {"amount": {"__extn": {"arg": "1200.5000", "fn": "decimal"}}, "invoice_id": "INV-1"},
            "rate": {"minute": 1, "hour": 1, "tool_minute": 1, "tool_hour": 1},
            "request_id": "7",
            "session": {"client": "", "id": ""},
            "time": {"date": "2026-11-30", "hour": 15, "iso": "2026-11-30T15:00:00Z", "weekday": 1},
            "workflow": {"agents": [], "completed": [], "id": ""},
        },
        sort_keys=True,
    )
    assert with_approval.context == {
        **without.context,
        "approval": {"granted": True, "approvers": ["alice", "bob"], "decided_at": "2026-11-30T14:05:00Z"},
    }


def test_the_schema_offers_the_approval_to_tool_actions_only(policy_dir: Path) -> None:
    loaded = load_with(policy_dir, None)
    document = loaded.store.schema_json()[""]

    tool_context = document["actions"]["finance__pay_invoice"]["appliesTo"]["context"]["attributes"]
    listing_context = document["actions"]["list_tools"]["appliesTo"]["context"]["attributes"]
    assert tool_context["approval"] == {"type": "Approval", "required": False}
    assert "approval" not in listing_context
    assert document["commonTypes"]["Approval"]["attributes"] == {
        "granted": {"type": "Boolean"},
        "approvers": {"type": "Set", "element": {"type": "String"}},
        "decided_at": {"type": "String"},
    }


def test_an_access_policy_can_require_the_approval(policy_dir: Path) -> None:
    loaded = load_with(
        policy_dir,
        None,
        access=ACCESS
        + """
permit (principal, action == Action::"list_tools", resource);

@id("large-payments-approved")
@reason("Large payments run only once approved.")
forbid (principal, action == Action::"finance__pay_invoice", resource)
when { context.input.amount.greaterThan(decimal("1000.0")) }
unless { context has approval && context.approval.granted && context.approval.approvers.contains("alice") };
""",
    )
    tool_entry = loaded.catalog.resolve_tool("finance__pay_invoice")
    call = tool_call(FINANCE, tool_entry, PAY)

    refused = ApprovalContext(granted=False, approvers=("alice",), decided_at=datetime(2026, 11, 30, tzinfo=UTC))
    assert not loaded.decisions.decide_call(call, tool_entry).allowed
    assert not loaded.decisions.decide_call(call, tool_entry, approval=refused).allowed
    assert loaded.decisions.decide_call(call, tool_entry, approval=APPROVED).allowed
    assert loaded.decisions.visible_tools(call.origin, [tool_entry]) == [tool_entry]


# -- policy test cases and explain -----------------------------------------------------------

REPOSITORY = Path(__file__).resolve().parent.parent


def write_cases(policy_dir: Path, cases: str) -> None:
    tests = policy_dir / "tests"
    tests.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPOSITORY / "policies" / "tests" / "catalog.json", tests / "catalog.json")
    (tests / "cases.toml").write_text(cases)


FINANCE_CASE = """
[[case]]
name = "{name}"
agent = "f"
roles = ["finance"]
tool = "finance__pay_invoice"
arguments = {{ invoice_id = "INV-1", amount = {amount} }}
expect = "{expect}"
"""


def test_cases_expect_holds_and_check_the_requirement(policy_dir: Path) -> None:
    write_policy(policy_dir, "main.cedar", ACCESS)
    write_policy(
        policy_dir,
        "holds.cedar",
        LARGE_PAYMENTS.replace(
            '@approvers("role:finance-managers")', '@approvers("role:finance-managers,user:cfo")\n@quorum("2")'
        ),
        folder="approval",
    )
    write_cases(
        policy_dir,
        FINANCE_CASE.format(name="held", amount=1200.5, expect="hold")
        + 'approvers = ["user:cfo", "role:finance-managers"]\nquorum = 2\npolicy = "large-payments"\n'
        + FINANCE_CASE.format(name="wrong requirement", amount=1200.5, expect="hold")
        + 'approvers = ["role:finance-managers"]\nquorum = 1\n'
        + FINANCE_CASE.format(name="held, expected to run", amount=1200.5, expect="allow")
        + FINANCE_CASE.format(name="runs, expected held", amount=10, expect="hold")
        + FINANCE_CASE.format(name="runs", amount=10, expect="allow"),
    )

    results = {result.name: result for result in run_policy_tests(policy_dir)}

    assert results["held"].passed and results["held"].decided == "hold"
    assert results["held"].policy_ids == ("finance-pays", "large-payments")
    assert results["wrong requirement"].problems == (
        "expected approvers role:finance-managers, but the hold needs role:finance-managers, user:cfo",
        "expected quorum 1, but the hold needs 2",
    )
    assert results["held, expected to run"].problems == (
        "held: approval by role:finance-managers, user:cfo (quorum 2, expires in 1:00:00)",
    )
    assert "large-payments" in results["held, expected to run"].describe()
    assert results["runs, expected held"].problems == ("decided allow: allowed by policy 'finance-pays'",)
    assert results["runs"].passed and results["runs"].decided == "allow"


def test_requirement_keys_need_a_hold_expectation(policy_dir: Path) -> None:
    write_policy(policy_dir, "main.cedar", ACCESS)
    write_cases(policy_dir, FINANCE_CASE.format(name="x", amount=1, expect="allow") + "quorum = 2\n")

    with pytest.raises(ConfigError, match='approvers and quorum go with expect = "hold"'):
        run_policy_tests(policy_dir)


def test_the_quick_start_cases_pass_with_its_approval_policy() -> None:
    results = run_policy_tests(REPOSITORY / "policies")

    assert [r.describe() for r in results if not r.passed] == []
    assert "hold" in {r.decided for r in results}


def test_explain_and_test_show_the_hold(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(
        f'[policies]\ndir = "{REPOSITORY / "policies"}"\n[storage]\nurl = "sqlite:///{tmp_path / "gw.db"}"\n'
    )
    command = [sys.executable, "-m", "gateway", "policy", "explain", "--config", str(config)]
    command += ["--catalog", str(REPOSITORY / "policies" / "tests" / "catalog.json")]
    command += ["--agent", "finance-assistant", "--role", "finance", "--tool", "finance__pay_invoice"]

    explained = subprocess.run(
        [*command, "--args", '{"invoice_id": "INV-2001", "amount": 1200.5}'], capture_output=True, text=True, timeout=60
    )
    tested = subprocess.run(
        [sys.executable, "-m", "gateway", "policy", "test", "--dir", str(REPOSITORY / "policies")],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert explained.returncode == 0, explained.stderr
    lines = explained.stdout.splitlines()
    assert lines[0].startswith("allow: ")
    held = lines.index("held: approval by role:finance-managers (quorum 1, expires in 1:00:00)")
    assert lines[held + 1] == "  reason: Payments over 1,000 wait for a finance manager's approval."
    assert lines[held + 2].startswith("  permit large-payments-need-a-manager (")
    assert lines[held + 2].endswith("policies/approval/quickstart.cedar:7)")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "a payment over 1,000 waits for a finance manager" in tested.stdout and " hold " in tested.stdout


# -- connectors that have not listed ---------------------------------------------------------


def load_with_late_connector(policy_dir: Path, approval: str) -> PolicyEngine:
    write_policy(policy_dir, "main.cedar", ACCESS)
    write_policy(policy_dir, "holds.cedar", approval, folder="approval")
    engine = PolicyEngine(policy_dir)
    engine.store.load(make_catalog(connectors=["crm", "finance", "late"]))
    return engine


def test_an_approval_permit_confined_to_an_unlisted_connector_waits(policy_dir: Path) -> None:
    engine = load_with_late_connector(
        policy_dir,
        '@id("late-holds")\n@approvers("role:ops")\npermit (principal, action == Action::"late__wipe", resource);\n'
        '@id("late-exempt")\nforbid (principal, action, resource) when { context.input.x == "y" && '
        'action == Action::"late__wipe" };\n',
    )

    status = engine.store.status
    assert status.approval_count == 0
    assert len(status.waiting) == 2 and "'late-holds' (permit) waits for connector 'late'" in status.waiting[0]


def test_an_approval_permit_that_also_covers_listed_tools_cannot_wait(policy_dir: Path) -> None:
    with pytest.raises(PolicyLoadError, match=r"this permit names actions of connector 'late'.*run unheld"):
        load_with_late_connector(
            policy_dir,
            '@id("wide")\n@approvers("role:ops")\n'
            'permit (principal, action in [Action::"late__wipe", Action::"finance__pay_invoice"], resource);\n',
        )
