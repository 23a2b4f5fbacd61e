"""Access decisions, loading, reload and listings, with the real Cedar engine and real policy files."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.calls import Call, Origin, WorkflowState
from gateway.catalog import ResourceEntry
from gateway.connectors.base import Listing
from gateway.errors import PolicyLoadError
from gateway.identity.principal import Principal
from gateway.policy import ArgumentLimits, PolicyDecisions, PolicyEngine
from gateway.policy.cases import run_policy_tests
from gateway.policy.context import call_context, common_context, time_record
from gateway.policy.schema import generate_schema
from gateway.resource_uris import exposed_uri
from policy_world import (
    FINANCE,
    SALES,
    STRANGER,
    load,
    make_catalog,
    prompt_get,
    standard_tools,
    tool,
    tool_call,
    write_policy,
)

REPOSITORY = Path(__file__).resolve().parent.parent

SALES_POLICIES = """
@id("sales-crm")
@reason("Sales agents work with customer records.")
permit (principal in Role::"sales", action in Action::"server:crm", resource);
"""


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    return tmp_path / "policies"


SEARCH = {"query": "acme"}
UPDATE = {"customer_id": "C-1", "field": "status", "value": "active"}
PAY = {"invoice_id": "INV-1", "amount": 120.5}


# -- decisions -------------------------------------------------------------------------------


def test_a_call_no_policy_permits_is_denied(policy_dir: Path) -> None:
    loaded = load(policy_dir, SALES_POLICIES)

    decision = loaded.call(FINANCE, "crm__search_customers", SEARCH)

    assert not decision.allowed
    assert decision.reason == "no access policy allows agent 'finance-bot' to call tool 'crm__search_customers'"
    assert decision.policy_ids == ()


def test_a_role_permit_allows_agents_in_that_role(policy_dir: Path) -> None:
    loaded = load(policy_dir, SALES_POLICIES)

    decision = loaded.call(SALES, "crm__update_record", UPDATE)

    assert decision.allowed
    assert decision.policy_ids == ("sales-crm",)
    assert decision.annotations["sales-crm"]["reason"] == "Sales agents work with customer records."
    assert "sales-crm (" in decision.explain() and "main.cedar:2" in decision.explain()
    assert not loaded.call(STRANGER, "crm__update_record", UPDATE).allowed


def test_forbid_wins_and_its_reason_is_what_the_agent_sees(policy_dir: Path) -> None:
    loaded = load(
        policy_dir,
        SALES_POLICIES
        + """
@id("no-destructive-without-reasoning")
@reason("Explain why before changing data.")
forbid (principal, action in Action::"destructive", resource)
unless { context has reasoning && context.reasoning != "" };
""",
    )

    denied = loaded.call(SALES, "crm__update_record", UPDATE)
    allowed = loaded.call(SALES, "crm__update_record", UPDATE, reasoning="The customer asked for it.")

    assert not denied.allowed
    assert denied.reason == "Explain why before changing data."
    assert denied.policy_ids == ("no-destructive-without-reasoning",)
    assert "forbid" not in denied.reason and "context" not in denied.reason  # never the policy text
    assert allowed.allowed


def test_a_forbid_without_a_reason_does_not_name_itself_to_the_agent(policy_dir: Path) -> None:
    loaded = load(
        policy_dir,
        SALES_POLICIES
        + """
@id("internal-freeze-2026-q4")
forbid (principal, action == Action::"crm__update_record", resource);
""",
    )

    denied = loaded.call(SALES, "crm__update_record", UPDATE)

    assert not denied.allowed
    assert denied.policy_ids == ("internal-freeze-2026-q4",)  # the audit log and the operator see the id
    assert "internal-freeze" not in denied.reason  # the agent does not learn the policy's name
    assert denied.reason == "a policy of this gateway forbids agent 'sales-bot' to call tool 'crm__update_record'"


@pytest.mark.parametrize(
    ("scope", "allowed", "denied"),
    [
        (
            'action in Action::"server:finance"',
            {"finance__pay_invoice", "finance__list_invoices"},
            {"crm__search_customers"},
        ),
        (
            'action in Action::"read_only"',
            {"crm__search_customers", "finance__list_invoices"},
            {"finance__pay_invoice"},
        ),
        ('action in Action::"destructive"', {"crm__update_record", "finance__pay_invoice"}, {"finance__list_invoices"}),
        ('action in Action::"open_world"', {"finance__pay_invoice"}, {"crm__update_record"}),
        ('action in Action::"label:pii"', {"crm__update_record"}, {"crm__search_customers"}),
        (
            'action in Action::"label:customer-data"',
            {"crm__update_record", "crm__search_customers"},
            {"finance__pay_invoice"},
        ),
        ('action in Action::"call_tool"', {"crm__update_record", "finance__pay_invoice"}, set()),
    ],
)
def test_generated_action_groups_match_their_tools(
    policy_dir: Path, scope: str, allowed: set[str], denied: set[str]
) -> None:
    catalog = make_catalog(labels={"crm": ("customer-data",)}, tool_labels={"crm": {"update_record": ("pii",)}})
    loaded = load(policy_dir, f'permit (principal in Role::"ops", {scope}, resource);', catalog)
    ops = Principal(agent="ops-bot", roles=("ops",))
    arguments = {
        "crm__search_customers": SEARCH,
        "crm__update_record": UPDATE,
        "finance__pay_invoice": PAY,
        "finance__list_invoices": {},
    }

    for name in allowed:
        assert loaded.call(ops, name, arguments[name]).allowed, name
    for name in denied:
        assert not loaded.call(ops, name, arguments[name]).allowed, name


def test_tool_and_principal_attributes_are_available_to_policies(policy_dir: Path) -> None:
    loaded = load(
        policy_dir,
        """
permit (principal, action in Action::"call_tool", resource is Tool)
when {
  principal has user && principal.user == User::"maria" &&
  resource.server == "crm" && resource.name == "update_record" &&
  resource.annotations.destructive && !resource.annotations.read_only
};
""",
    )

    assert loaded.call(Principal("bot", ("sales",), user="maria"), "crm__update_record", UPDATE).allowed
    assert not loaded.call(Principal("bot", ("sales",), user="tom"), "crm__update_record", UPDATE).allowed
    assert not loaded.call(Principal("bot", ("sales",)), "crm__update_record", UPDATE).allowed


def test_tools_without_annotations_get_the_mcp_defaults(policy_dir: Path) -> None:
    catalog = make_catalog({"ops": [tool("restart", {}), tool("status", {}, annotations={"readOnlyHint": True})]})
    loaded = load(
        policy_dir,
        """
permit (principal, action in Action::"call_tool", resource);
@reason("Destructive or open-world tools need a ticket.")
forbid (principal, action in [Action::"destructive", Action::"open_world"], resource);
""",
        catalog,
    )

    restart = loaded.call(SALES, "ops__restart")
    assert not restart.allowed and restart.reason == "Destructive or open-world tools need a ticket."
    # A read-only tool is never destructive, but MCP's default openWorldHint is true.
    assert not loaded.call(SALES, "ops__status").allowed


def test_an_evaluation_error_in_a_forbid_denies_instead_of_being_skipped(policy_dir: Path) -> None:
    loaded = load(
        policy_dir,
        SALES_POLICIES
        + """
@id("overflowing-forbid")
forbid (principal, action == Action::"crm__search_customers", resource)
when { context.input has limit && context.input.limit * 9223372036854775807 > 10 };
""",
    )

    # Cedar alone skips the erroring forbid and answers Allow; the gateway must not.
    decision = loaded.call(SALES, "crm__search_customers", {"query": "a", "limit": 2})

    assert not decision.allowed
    assert decision.errors and "overflowing-forbid" in decision.errors[0]
    assert "could not be evaluated" in decision.reason
    assert loaded.call(SALES, "crm__search_customers", {"query": "a"}).allowed


def test_policies_without_id_are_named_after_file_and_position(policy_dir: Path) -> None:
    loaded = load(
        policy_dir,
        'permit (principal in Role::"x", action, resource);\n'
        "// the second policy\n"
        'permit (principal in Role::"sales", action in Action::"call_tool", resource);\n',
        name="team.cedar",
    )

    decision = loaded.call(SALES, "crm__search_customers", SEARCH)

    assert decision.policy_ids == ("team:2",)
    assert decision.policies[0].line == 3
    assert [p.id for p in loaded.store.policies()] == ["team:1", "team:2"]


def test_time_and_session_are_in_the_context(policy_dir: Path) -> None:
    from datetime import datetime, timedelta, timezone

    loaded = load(
        policy_dir,
        """
permit (principal, action in Action::"call_tool", resource)
when { context.time.hour >= 9 && context.time.hour < 17 && context.time.weekday <= 5 &&
       context.session.client == "claude" && context.request_id == "r-1" };
""",
    )
    office = datetime(2026, 11, 30, 10, 0, tzinfo=timezone(timedelta(hours=-2)))  # Monday 12:00 UTC

    def at(moment: datetime, client: str = "claude"):
        return loaded.call(SALES, "crm__search_customers", SEARCH, now=moment, client=client, request_id="r-1")

    assert at(office).allowed
    assert not at(office.replace(hour=22)).allowed  # 00:00 UTC on Tuesday
    assert not at(office + timedelta(days=5)).allowed  # Saturday
    assert not at(office, client="other").allowed


def test_the_clocks_time_is_its_current_second_and_each_request_gets_its_own_record() -> None:
    def seconds_since(start: datetime) -> list[dict[str, object]]:
        elapsed = int((datetime.now(UTC) - start).total_seconds()) + 2
        return [time_record(start.replace(microsecond=0) + timedelta(seconds=n)) for n in range(elapsed)]

    start = datetime.now(UTC)
    first = time_record(None)
    assert first in seconds_since(start)
    assert time_record(datetime(2026, 11, 30, 23, 59, 59, 999999)) == {  # naive: UTC already
        "hour": 23,
        "weekday": 1,
        "date": "2026-11-30",
        "iso": "2026-11-30T23:59:59Z",
    }
    first["hour"] = 99  # one request's context is its own: changing it changes no other
    second = time_record(None)
    assert second["hour"] != 99 and second in seconds_since(start)


def test_the_context_is_read_from_the_call_and_a_listing_states_no_reasoning() -> None:
    shape = generate_schema(make_catalog()).tools["crm__search_customers"]
    origin = Origin(SALES, request_id=7, session_id="s-1", client_name="claude")
    call = Call("tools/call", origin, "crm__search_customers", {"query": "acme"}, reasoning="why", workflow="w-1")
    now = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    common = {
        "session": {"id": "s-1", "client": "claude"},
        "time": {"hour": 12, "weekday": 1, "date": "2026-11-30", "iso": "2026-11-30T12:00:00Z"},
        "request_id": "7",
    }

    called = call_context(shape.input, call, now=now, limits=ArgumentLimits())
    read = common_context(call, now=now, limits=ArgumentLimits())
    listed = common_context(origin, now=now, limits=ArgumentLimits())

    workflow = {"id": "w-1", "completed": [], "agents": []}
    this_call_only = {"minute": 1, "hour": 1, "tool_minute": 1, "tool_hour": 1}  # not counted: the call alone
    assert called.context == {
        **common, "reasoning": "why", "workflow": workflow, "input": {"query": "acme"}, "rate": this_call_only
    }  # fmt: skip
    assert read.context == {**common, "reasoning": "why", "workflow": workflow}
    assert listed.context == {**common, "workflow": {"id": "", "completed": [], "agents": []}}
    done = call.with_workflow_state(WorkflowState(frozenset({"b__y", "a__x"}), frozenset({"sales-bot"})))
    assert call_context(shape.input, done, now=now, limits=ArgumentLimits()).context["workflow"] == {
        "id": "w-1",
        "completed": ["a__x", "b__y"],
        "agents": ["sales-bot"],
    }
    bare = call_context(shape.input, Call("tools/call", Origin(SALES)), now=now, limits=ArgumentLimits())
    assert bare.context is None and bare.invalid_arguments == "required argument 'query' is missing"


# -- what a denial conceals --------------------------------------------------------------------

CONCEALING = """
permit (principal is Agent, action == Action::"list_tools", resource == Server::"crm");
permit (principal in Role::"sales", action in Action::"call_tool", resource);
@reason("Explain why before changing data.")
forbid (principal, action in Action::"destructive", resource) unless { context has reasoning };
"""


def test_a_denied_call_says_whether_the_agent_may_see_the_tool(policy_dir: Path) -> None:
    loaded = load(policy_dir, CONCEALING)

    explained = loaded.call(SALES, "crm__update_record", UPDATE)  # listed: told why
    unlisted = loaded.call(SALES, "finance__pay_invoice", PAY)  # callable with reasoning, but finance is not listed
    never = loaded.call(STRANGER, "crm__search_customers", SEARCH)  # may never call it
    allowed = loaded.call(SALES, "crm__search_customers", SEARCH)

    assert not explained.allowed and explained.reason == "Explain why before changing data."
    assert not explained.concealed
    assert not unlisted.allowed and unlisted.concealed
    assert not never.allowed and never.concealed
    assert allowed.allowed and not allowed.concealed
    # Arguments that break the schema are said only to an agent that may see the tool.
    wrong = loaded.call(SALES, "crm__search_customers", {"query": 5})
    assert wrong.invalid_arguments is not None and not wrong.concealed
    assert loaded.call(STRANGER, "crm__search_customers", {"query": 5}).concealed


def test_concealment_follows_the_listing_the_call_would_get(policy_dir: Path) -> None:
    loaded = load(
        policy_dir,
        CONCEALING
        + 'forbid (principal, action == Action::"list_tools", resource) when { context.session.client == "x" };',
    )
    update = loaded.catalog.resolve_tool("crm__update_record")
    concealed = []

    for client in ("claude", "x"):
        call = tool_call(SALES, update, UPDATE, client=client)
        listed = loaded.decisions.visible_tools(call.origin, (update,))
        concealed.append(loaded.decisions.decide_call(call, update).concealed)
        assert concealed[-1] is not bool(listed), client

    assert concealed == [False, True]


def test_a_denial_reads_the_visibility_the_listing_cached(policy_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = load(policy_dir, CONCEALING)
    loaded.decisions.visible_tools(Origin(SALES), loaded.catalog.tools())
    judged: list[str] = []

    def record(state: object, principal: Principal, action: str, *rest: object, **options: object) -> None:
        judged.append(action)

    monkeypatch.setattr(PolicyDecisions, "_partial", staticmethod(record))
    monkeypatch.setattr(PolicyDecisions, "_scope_verdict", staticmethod(record))

    denied = loaded.call(SALES, "crm__update_record", UPDATE)

    assert not denied.allowed and not denied.concealed
    assert judged == []


def test_a_denied_prompt_says_whether_the_agent_may_see_it_and_a_resource_never_conceals(policy_dir: Path) -> None:
    catalog = make_catalog(
        prompts={"crm": [{"name": "account_summary"}], "finance": [{"name": "overdue_reminder"}]},
        resources={"crm": [{"name": "schema", "uri": "crm://schema"}]},
    )
    loaded = load(
        policy_dir,
        """
permit (
  principal in Role::"sales", action in [Action::"get_prompt", Action::"read_resource"], resource in Server::"crm"
);
forbid (principal, action == Action::"get_prompt", resource) when { context.workflow.id != "" };
""",
        catalog,
    )
    summary = catalog.resolve_prompt("crm__account_summary")
    in_a_workflow = replace(prompt_get(SALES, summary), workflow="w-1")

    assert loaded.prompt(SALES, "finance__overdue_reminder").concealed
    assert not loaded.prompt(SALES, "crm__account_summary").concealed
    denied = loaded.decisions.decide_get_prompt(in_a_workflow, summary)
    assert not denied.allowed and not denied.concealed
    assert not loaded.read(STRANGER, "crm", "crm://schema").allowed
    assert not loaded.read(STRANGER, "crm", "crm://schema").concealed


def test_without_a_loaded_set_every_target_is_concealed(policy_dir: Path) -> None:
    engine = PolicyEngine(policy_dir)
    catalog = make_catalog()
    search = catalog.resolve_tool("crm__search_customers")

    assert engine.decisions.decide_call(tool_call(SALES, search, SEARCH), search).concealed


# -- loading ---------------------------------------------------------------------------------


def test_without_a_loadable_set_everything_is_denied(policy_dir: Path) -> None:
    write_policy(policy_dir, "broken.cedar", 'permit (principal, action, resource) when { context.x == "a };\n')
    engine = PolicyEngine(policy_dir)
    catalog = make_catalog()

    with pytest.raises(PolicyLoadError) as caught:
        engine.store.load(catalog)

    assert "broken.cedar:1" in str(caught.value)
    status = engine.store.status
    assert not status.loaded and status.policy_count == 0 and "broken.cedar:1" in (status.last_error or "")
    search = catalog.resolve_tool("crm__search_customers")
    decision = engine.decisions.decide_call(tool_call(SALES, search, SEARCH), search)
    assert not decision.allowed and "no access policies are loaded" in decision.reason
    assert engine.decisions.visible_tools(Origin(SALES), catalog.tools()) == []


def test_a_syntax_error_names_file_and_line_and_the_previous_set_stays(policy_dir: Path) -> None:
    loaded = load(policy_dir, SALES_POLICIES)
    store = loaded.store
    write_policy(
        policy_dir,
        "main.cedar",
        SALES_POLICIES + "\npermit (\n  principal,\n  action,\n  resource\n) when { context.x bar };\n",
    )

    with pytest.raises(PolicyLoadError) as caught:
        store.load(loaded.catalog)

    assert str(caught.value).startswith(f"{policy_dir / 'access' / 'main.cedar'}:10: syntax error:")
    assert "bar" in str(caught.value)
    assert store.status.loaded and store.status.last_error == str(caught.value)
    assert loaded.call(SALES, "crm__search_customers", SEARCH).allowed


@pytest.mark.parametrize(
    ("body", "line", "problem"),
    [
        (
            'permit (\n  principal,\n  action == Action::"crm__delete_everything",\n  resource\n);',
            3,
            'unrecognized action `Action::"crm__delete_everything"`',
        ),
        (
            'permit (\n  principal,\n  action == Action::"finance__pay_invoice",\n  resource\n)\n'
            'when { context.input.ammount.lessThan(decimal("10.0")) };',
            6,
            "attribute `input.ammount` in context",
        ),
        (
            'permit (\n  principal,\n  action == Action::"finance__pay_invoice",\n  resource\n)\n'
            "when { context.input.amount > 10 };",
            1,
            "expected Long but saw decimal",
        ),
        ("permit (principal is Robot, action, resource);", 1, "unrecognized entity type `Robot`"),
        (
            'permit (principal, action == Action::"finance__list_invoices", resource)\n'
            'when { context.input.status == "open" };',
            2,
            "optional attribute `input.status`",
        ),
    ],
    ids=["unknown-tool", "unknown-argument", "wrong-type", "unknown-entity-type", "optional-without-has"],
)
def test_a_policy_that_fails_validation_is_a_load_error_naming_file_and_line(
    policy_dir: Path, body: str, line: int, problem: str
) -> None:
    write_policy(policy_dir, "00-good.cedar", SALES_POLICIES)
    write_policy(policy_dir, "10-team.cedar", "// team policies\n\n" + body + "\n")
    store = PolicyEngine(policy_dir).store

    with pytest.raises(PolicyLoadError) as caught:
        store.load(make_catalog())

    message = str(caught.value)
    assert message.startswith(f"{policy_dir / 'access' / '10-team.cedar'}:{line + 2}: policy '10-team:1': ")
    assert problem in message


def test_duplicate_policy_ids_are_refused(policy_dir: Path) -> None:
    write_policy(policy_dir, "a.cedar", '@id("p")\npermit (principal, action, resource);\n')
    write_policy(policy_dir, "b.cedar", '\n@id("p")\nforbid (principal, action, resource);\n')

    with pytest.raises(
        PolicyLoadError, match=r"b\.cedar:2: policy id 'p' is already used by the policy at .*a\.cedar:1"
    ):
        PolicyEngine(policy_dir).store.load(make_catalog())


def test_reload_if_changed_picks_up_edits_and_keeps_the_old_set_on_a_bad_edit(policy_dir: Path) -> None:
    loaded = load(policy_dir, SALES_POLICIES)
    store, catalog = loaded.store, loaded.catalog
    assert store.reload_if_changed(catalog) is False  # nothing changed

    write_policy(
        policy_dir, "main.cedar", 'permit (principal in Role::"finance", action in Action::"server:crm", resource);'
    )
    assert store.reload_if_changed(catalog) is True
    assert loaded.call(FINANCE, "crm__search_customers", SEARCH).allowed
    assert not loaded.call(SALES, "crm__search_customers", SEARCH).allowed

    write_policy(policy_dir, "main.cedar", 'permit (principal, action == Action::"crm__nope", resource);')
    assert store.reload_if_changed(catalog) is False
    assert "main.cedar:1" in (store.status.last_error or "")
    assert loaded.call(FINANCE, "crm__search_customers", SEARCH).allowed  # the old set still decides

    write_policy(policy_dir, "extra.cedar", SALES_POLICIES)
    write_policy(policy_dir, "main.cedar", "// emptied\n")
    assert store.reload_if_changed(catalog) is True
    assert store.status.last_error is None and store.status.policy_count == 1
    assert loaded.call(SALES, "crm__search_customers", SEARCH).allowed

    (policy_dir / "access" / "extra.cedar").unlink()
    assert store.reload_if_changed(catalog) is True
    assert not loaded.call(SALES, "crm__search_customers", SEARCH).allowed


def test_catalog_changed_revalidates_a_policy_whose_tools_were_not_listed_yet(policy_dir: Path) -> None:
    catalog = make_catalog({"crm": standard_tools()["crm"]}, connectors=["crm", "finance"])
    write_policy(
        policy_dir,
        "main.cedar",
        SALES_POLICIES + 'permit (principal in Role::"finance", action == Action::"finance__pay_invoice", resource);\n',
    )
    engine = PolicyEngine(policy_dir)
    engine.store.load(catalog)  # the finance permit waits for finance to list (see test_policy_waiting.py)
    assert engine.store.status.policy_count == 1 and "finance__pay_invoice" in engine.store.status.waiting[0]

    catalog.update("finance", Listing(tools=tuple(standard_tools()["finance"])))
    engine.store.catalog_changed(catalog)

    status = engine.store.status
    assert status.loaded and status.last_error is None and status.waiting == ()
    pay, search = catalog.resolve_tool("finance__pay_invoice"), catalog.resolve_tool("crm__search_customers")
    assert engine.decisions.decide_call(tool_call(FINANCE, pay, PAY), pay).allowed
    assert engine.decisions.decide_call(tool_call(SALES, search, SEARCH), search).allowed


def test_a_tool_whose_definition_changed_is_denied_until_revalidated(policy_dir: Path) -> None:
    loaded = load(policy_dir, 'permit (principal, action in Action::"call_tool", resource);')
    store, catalog = loaded.store, loaded.catalog
    changed = [tool("search_customers", {"query": {"type": "integer"}}, required=["query"])]
    catalog.update("crm", Listing(tools=(*changed, standard_tools()["crm"][1])))
    search = catalog.resolve_tool("crm__search_customers")
    call = tool_call(SALES, search, {"query": 5})

    before = loaded.decisions.decide_call(call, search)
    store.catalog_changed(catalog)
    after = loaded.decisions.decide_call(call, search)

    assert not before.allowed and "re-validated" in before.reason
    assert after.allowed


def test_catalog_changed_that_breaks_a_policy_keeps_the_previous_set(policy_dir: Path) -> None:
    loaded = load(policy_dir, 'permit (principal, action == Action::"crm__update_record", resource);')
    store, catalog = loaded.store, loaded.catalog
    update = catalog.resolve_tool("crm__update_record")
    catalog.update("crm", Listing(tools=(standard_tools()["crm"][0],)))  # update_record disappears

    store.catalog_changed(catalog)  # never raises

    assert "crm__update_record" in (store.status.last_error or "")
    assert loaded.decisions.decide_call(tool_call(SALES, update, UPDATE), update).allowed


def test_a_reload_swaps_the_set_the_decisions_read(policy_dir: Path) -> None:
    loaded = load(policy_dir, SALES_POLICIES)
    store, catalog = loaded.store, loaded.catalog
    first_load = store.status.loaded_at
    assert not loaded.call(FINANCE, "crm__search_customers", SEARCH).allowed

    write_policy(policy_dir, "main.cedar", 'permit (principal in Role::"finance", action, resource);')
    assert store.reload_if_changed(catalog) is True

    assert store.status.loaded_at != first_load
    assert loaded.call(FINANCE, "crm__search_customers", SEARCH).allowed


# -- listings --------------------------------------------------------------------------------


def test_visible_tools_hides_what_an_agent_may_never_call_and_keeps_conditional_tools(policy_dir: Path) -> None:
    loaded = load(
        policy_dir,
        """
permit (principal is Agent, action == Action::"list_tools", resource);
permit (principal in Role::"sales", action in Action::"server:crm", resource);
permit (principal in Role::"sales", action == Action::"finance__pay_invoice", resource)
when { context.input.amount.lessThan(decimal("100.0")) };
forbid (principal, action == Action::"finance__list_invoices", resource);
""",
    )
    decisions, catalog = loaded.decisions, loaded.catalog

    visible = [t.exposed for t in decisions.visible_tools(Origin(SALES), catalog.tools())]

    assert visible == ["crm__search_customers", "crm__update_record", "finance__pay_invoice"]
    assert decisions.visible_tools(Origin(STRANGER), catalog.tools()) == []
    assert loaded.call(SALES, "finance__pay_invoice", {"invoice_id": "I", "amount": 99.5}).allowed
    assert not loaded.call(SALES, "finance__pay_invoice", {"invoice_id": "I", "amount": 100}).allowed


def test_visible_tools_requires_list_tools_on_the_server(policy_dir: Path) -> None:
    loaded = load(
        policy_dir,
        """
permit (principal, action == Action::"list_tools", resource == Server::"crm");
permit (principal in Role::"sales", action in Action::"call_tool", resource);
""",
    )
    decisions, catalog = loaded.decisions, loaded.catalog

    assert [t.exposed for t in decisions.visible_tools(Origin(SALES), catalog.tools())] == [
        "crm__search_customers",
        "crm__update_record",
    ]
    assert loaded.call(SALES, "finance__list_invoices").allowed  # listing is filtered; calling is decided apart


def test_resources_and_prompts_are_decided_and_filtered(policy_dir: Path) -> None:
    catalog = make_catalog(
        prompts={"crm": [{"name": "account_summary"}], "finance": [{"name": "overdue_reminder"}]},
        resources={"crm": [{"name": "schema", "uri": "crm://schema"}]},
    )
    loaded = load(
        policy_dir,
        """
permit (
  principal in Role::"sales",
  action in [Action::"read_resource", Action::"get_prompt"],
  resource in Server::"crm"
);
forbid (principal, action == Action::"read_resource", resource is Resource)
when { resource.uri like "crm://secrets/*" };
""",
        catalog,
    )
    decisions = loaded.decisions

    assert loaded.read(SALES, "crm", "crm://customers/C-1").allowed
    assert not loaded.read(SALES, "crm", "crm://secrets/key").allowed
    assert not loaded.read(SALES, "finance", "finance://invoices/1").allowed
    assert loaded.prompt(SALES, "crm__account_summary").allowed
    assert not loaded.prompt(SALES, "finance__overdue_reminder").allowed
    assert [p.exposed for p in decisions.visible_prompts(Origin(SALES), catalog.prompts())] == ["crm__account_summary"]
    listed = [
        ResourceEntry(exposed_uri(connector, uri), connector, uri, {"uri": exposed_uri(connector, uri)})
        for connector, uri in (("crm", "crm://schema"), ("crm", "crm://secrets/key"), ("finance", "f://x"))
    ]
    assert decisions.visible_resources(Origin(SALES), listed) == [{"uri": "gateway://crm/crm://schema"}]
    templates = [
        ResourceEntry(exposed_uri(connector, uri), connector, uri, {"uriTemplate": exposed_uri(connector, uri)})
        for connector, uri in (("crm", "crm://customers/{id}"), ("finance", "finance://{id}"))
    ]
    assert decisions.visible_resource_templates(Origin(SALES), templates) == [
        {"uriTemplate": "gateway://crm/crm://customers/{id}"}
    ]


def test_resource_policies_name_the_exposed_uri_and_match_the_backends_own(policy_dir: Path) -> None:
    catalog = make_catalog(resources={"crm": [{"name": "schema", "uri": "crm://schema"}]})
    loaded = load(
        policy_dir,
        """
permit (principal, action == Action::"read_resource", resource == Resource::"gateway://crm/crm://schema");
permit (principal, action == Action::"read_resource", resource)
when { resource.server == "finance" && resource.uri like "finance://invoices/*" };
""",
        catalog,
    )
    assert loaded.read(SALES, "crm", "crm://schema").allowed
    assert not loaded.read(SALES, "finance", "crm://schema").allowed
    assert loaded.read(SALES, "finance", "finance://invoices/1").allowed
    assert not loaded.read(SALES, "crm", "finance://invoices/1").allowed


# -- the shipped policies ----------------------------------------------------------------------


def test_the_quickstart_policies_pass_their_own_cases() -> None:
    results = run_policy_tests(REPOSITORY / "policies")

    assert len(results) >= 10
    assert [r.describe() for r in results if not r.passed] == []
