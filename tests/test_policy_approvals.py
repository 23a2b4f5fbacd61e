"""Approval policies: loaded with the access policies, their annotations checked, and the hold they decide."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from gateway.errors import PolicyLoadError
from gateway.policy import PolicyEngine
from gateway.policy.hold import DEFAULT_EXPIRY, Requirement, combine
from policy_world import Loaded, make_catalog, write_policy

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
