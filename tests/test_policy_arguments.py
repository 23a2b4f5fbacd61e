"""How tool arguments reach policies: typed per tool, numbers made comparable, everything bounded."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from gateway.calls import Origin
from gateway.identity.principal import Principal
from policy_world import FINANCE, SALES, STRANGER, load, make_catalog, standard_tools, tool

ALLOW_ALL_CALLS = 'permit (principal, action in Action::"call_tool", resource);\n'

UNUSUAL = tool(
    "import",
    input_schema={
        "type": "object",
        "properties": {
            "filter": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
            "nothing": {"type": "null"},
            "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
            "mixed": {"type": "array"},
            "pair": {"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}]},
            "untyped": {"description": "anything at all"},
            "note": {"type": ["string", "null"]},
            "tags": {"type": "array", "items": {"type": "string"}},
            "options": {"$ref": "#/$defs/Options"},
            "tree": {"$ref": "#/$defs/Node"},
            "choice": {
                "oneOf": [
                    {"type": "object", "properties": {"a": {"type": "string"}}},
                    {"type": "object", "properties": {"b": {"type": "string"}}},
                ]
            },
        },
        "required": ["filter"],
        "$defs": {
            "Options": {
                "type": "object",
                "properties": {"dry_run": {"type": "boolean"}, "batch": {"type": "integer"}},
                "required": ["dry_run"],
            },
            "Node": {
                "type": "object",
                "properties": {"label": {"type": "string"}, "child": {"$ref": "#/$defs/Node"}},
            },
        },
    },
)


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    return tmp_path / "policies"


def unusual_catalog():
    return make_catalog({**standard_tools(), "etl": [UNUSUAL]})


def nested(levels: int, leaf: Any = "bottom") -> Any:
    """`{"child": {"child": ... leaf}}`, built without recursion."""
    value = leaf
    for _ in range(levels):
        value = {"child": value}
    return value


# -- typed arguments -------------------------------------------------------------------------


def test_policies_compare_typed_arguments(policy_dir: Path) -> None:
    loaded = load(
        policy_dir,
        """
permit (principal in Role::"sales", action == Action::"crm__search_customers", resource)
when { (context.input has limit && context.input.limit <= 10) && !(context.input.query like "*@*") };
""",
    )

    assert loaded.call(SALES, "crm__search_customers", {"query": "acme", "limit": 10}).allowed
    assert not loaded.call(SALES, "crm__search_customers", {"query": "acme", "limit": 11}).allowed
    assert not loaded.call(SALES, "crm__search_customers", {"query": "dana@acme.example", "limit": 1}).allowed
    assert not loaded.call(SALES, "crm__search_customers", {"query": "acme"}).allowed


def test_a_whole_float_counts_as_an_integer_and_a_fraction_is_denied(policy_dir: Path) -> None:
    loaded = load(
        policy_dir,
        'permit (principal, action == Action::"crm__search_customers", resource) '
        "when { context.input has limit && context.input.limit <= 10 };",
    )

    assert loaded.call(SALES, "crm__search_customers", {"query": "a", "limit": 2.0}).allowed
    fraction = loaded.call(SALES, "crm__search_customers", {"query": "a", "limit": 2.5})
    assert not fraction.allowed
    assert fraction.reason.startswith("argument 'input.limit' must be an integer")
    assert "2.5" in fraction.reason


def test_numbers_are_compared_as_decimals_rounded_to_four_places(policy_dir: Path) -> None:
    loaded = load(
        policy_dir,
        """
permit (principal in Role::"finance", action == Action::"finance__pay_invoice", resource)
when { context.input.amount.lessThanOrEqual(decimal("1000.0")) };
""",
    )

    def pay(amount: Any):
        return loaded.call(FINANCE, "finance__pay_invoice", {"invoice_id": "INV-1", "amount": amount})

    assert pay(1000).allowed  # an integer is a number too
    assert pay(999.5).allowed
    assert pay(1000.00005).allowed  # rounds half to even: 1000.0000
    assert not pay(1000.00015).allowed  # rounds half to even: 1000.0002
    assert not pay(1000.01).allowed


@pytest.mark.parametrize("amount", [1e16, -1e300, float("inf"), float("nan")])
def test_a_number_outside_the_decimal_range_is_denied_with_a_reason(policy_dir: Path, amount: float) -> None:
    loaded = load(policy_dir, ALLOW_ALL_CALLS)

    decision = loaded.call(FINANCE, "finance__pay_invoice", {"invoice_id": "INV-1", "amount": amount})

    assert not decision.allowed
    assert decision.reason.startswith("argument 'input.amount': ")
    assert "the call is denied" in decision.reason


def test_an_integer_beyond_64_bits_is_denied_with_a_reason(policy_dir: Path) -> None:
    loaded = load(policy_dir, ALLOW_ALL_CALLS)

    decision = loaded.call(SALES, "crm__search_customers", {"query": "a", "limit": 2**70})

    assert not decision.allowed
    assert decision.reason == (
        "argument 'input.limit' is an integer beyond the 64-bit range policies can compare; the call is denied"
    )
    assert loaded.call(SALES, "crm__search_customers", {"query": "a", "limit": 2**63 - 1}).allowed


def test_wrong_types_and_missing_arguments_are_denied_with_a_reason(policy_dir: Path) -> None:
    loaded = load(
        policy_dir,
        ALLOW_ALL_CALLS
        + '@reason("Finance only.")\n'
        + 'forbid (principal, action == Action::"finance__pay_invoice", resource) '
        + 'unless { principal in Role::"finance" };\n',
    )

    wrong = loaded.call(SALES, "crm__search_customers", {"query": 5})
    missing = loaded.call(SALES, "crm__search_customers", {"limit": 5})
    not_an_object = loaded.call(SALES, "crm__search_customers", ["acme"])

    assert wrong.reason == (
        "argument 'input.query' must be a string (the tool's input schema says so), got an integer; the call is denied"
    )
    assert missing.reason.startswith("required argument 'input.query' is missing")
    assert not_an_object.reason == "the arguments must be a JSON object; the call is denied"
    # Someone who may not call the tool at all is told that, not what is wrong with the arguments.
    refused = loaded.call(SALES, "finance__pay_invoice", {"invoice_id": 7})
    assert refused.reason == "Finance only." and not refused.allowed


def test_null_for_an_optional_argument_is_an_absent_attribute(policy_dir: Path) -> None:
    loaded = load(
        policy_dir,
        'permit (principal, action == Action::"finance__list_invoices", resource) '
        'unless { context.input has status && context.input.status != "open" };',
    )

    assert loaded.call(FINANCE, "finance__list_invoices", {}).allowed
    assert loaded.call(FINANCE, "finance__list_invoices", {"status": None}).allowed
    assert loaded.call(FINANCE, "finance__list_invoices", {"status": "open"}).allowed
    assert not loaded.call(FINANCE, "finance__list_invoices", {"status": "paid"}).allowed


def test_arguments_the_schema_does_not_declare_are_left_out(policy_dir: Path) -> None:
    loaded = load(policy_dir, ALLOW_ALL_CALLS)

    assert loaded.call(SALES, "crm__search_customers", {"query": "a", "unexpected": {"x": 1}}).allowed


# -- what Cedar cannot express ---------------------------------------------------------------


def test_inexpressible_schemas_are_reported_and_offered_as_json_text(policy_dir: Path) -> None:
    loaded = load(
        policy_dir,
        ALLOW_ALL_CALLS
        + """
@id("no-admin-imports")
@reason("Imports may not touch admin data.")
forbid (principal, action == Action::"etl__import", resource)
when {
  context.input.filter like "*admin*" ||
  (context.input has metadata && context.input.metadata like "*\\"owner\\":\\"root\\"*") ||
  (context.input has tags && context.input.tags.contains("admin")) ||
  (context.input has options && context.input.options.dry_run == false) ||
  (context.input has tree && context.input.tree has child && context.input.tree.child like "*admin*")
};
""",
        unusual_catalog(),
    )
    limitations = "\n".join(loaded.store.status.limitations)

    for path in ("filter", "nothing", "metadata", "mixed", "pair", "untyped", "tree.child", "choice"):
        assert f"etl__import: input.{path}: " in limitations, path
    for typed in ("input.note:", "input.tags", "input.options", "input.tree:", "input.tree.label"):
        assert typed not in limitations, typed
    schema = loaded.store.schema_json()[""]["actions"]["etl__import"]["appliesTo"]["context"]["attributes"]["input"]
    assert schema["attributes"]["filter"] == {"type": "String", "required": True}
    assert schema["attributes"]["note"] == {"type": "String", "required": False}
    assert schema["attributes"]["options"]["attributes"]["dry_run"] == {"type": "Boolean", "required": True}

    def run(**arguments: Any):
        return loaded.call(SALES, "etl__import", {"filter": "customers", **arguments})

    assert run().allowed
    assert run(filter=5, nothing=None, mixed=[1, "a", None], pair=["a", 1], untyped={"k": [1]}, note=None).allowed
    assert not run(filter="admin-users").allowed
    assert run(metadata={"owner": "ann"}).allowed
    root = run(metadata={"owner": "root"})
    assert not root.allowed and root.reason == "Imports may not touch admin data."
    assert not run(tags=["admin", "x"]).allowed
    assert not run(options={"dry_run": False}).allowed
    assert run(options={"dry_run": True, "batch": 10}).allowed
    assert not run(tree={"label": "top", "child": {"label": "admin"}}).allowed
    assert run(tree={"label": "admin"}).allowed  # label is typed; only the untyped child is text


def test_json_text_is_compact_and_keeps_the_order_sent(policy_dir: Path) -> None:
    loaded = load(
        policy_dir,
        'permit (principal, action == Action::"etl__import", resource) '
        'when { context.input has metadata && context.input.metadata == "{\\"b\\":\\"1\\",\\"a\\":\\"é\\"}" };',
        unusual_catalog(),
    )

    assert loaded.call(SALES, "etl__import", {"filter": "x", "metadata": {"b": "1", "a": "é"}}).allowed
    assert not loaded.call(SALES, "etl__import", {"filter": "x", "metadata": {"a": "é", "b": "1"}}).allowed


@pytest.mark.parametrize(
    "input_schema",
    [
        None,
        "not a schema",
        {"type": "object", "properties": ["a"]},
        {"type": "object", "properties": {"a": 5, "b": {"type": "wat"}}},
        {"type": "object", "required": "a", "properties": {"a": {"type": "string"}}},
        {"type": "object", "properties": {"a": {"$ref": "#/nowhere"}, "b": {"$ref": 7}, "c": {"$ref": "http://x"}}},
        {"type": "object", "properties": {"a": {"type": ["string", "integer"]}, "b": {"enum": ["x", 1]}}},
        {"type": "object", "properties": {"a": {"allOf": [{"type": "string"}, {"minLength": 1}]}}},
        {"type": "object", "properties": {"a": {"anyOf": []}, "b": {"oneOf": "x"}, "c": {"type": "array", "items": 3}}},
        {"type": "object", "additionalProperties": True},
        {"type": "array", "items": {"type": "string"}},
        {"anyOf": [{"type": "object"}, {"type": "string"}]},
        nested(200, {"type": "string"}) | {"type": "object"},
    ],
)
def test_the_schema_generator_never_fails_on_a_strange_input_schema(policy_dir: Path, input_schema: Any) -> None:
    strange = {"name": "strange", "inputSchema": input_schema}
    loaded = load(policy_dir, ALLOW_ALL_CALLS, make_catalog({"odd": [strange]}))

    assert loaded.call(SALES, "odd__strange", {}).allowed


def test_deeply_nested_schemas_are_typed_to_32_levels(policy_dir: Path) -> None:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(40):
        schema = {"type": "object", "properties": {"child": schema}}
    loaded = load(policy_dir, ALLOW_ALL_CALLS, make_catalog({"odd": [tool("deep", input_schema=schema)]}))

    assert any("nested deeper than 32 levels" in line for line in loaded.store.status.limitations)
    assert loaded.call(SALES, "odd__deep", nested(40)["child"]).allowed


def test_a_schema_whose_references_fan_out_is_typed_within_a_budget(policy_dir: Path) -> None:
    definitions = {
        f"D{i}": {
            "type": "object",
            "properties": {"a": {"$ref": f"#/$defs/D{i + 1}"}, "b": {"$ref": f"#/$defs/D{i + 1}"}},
        }
        for i in range(30)
    }
    definitions["D30"] = {"type": "string"}
    schema = {"type": "object", "properties": {"root": {"$ref": "#/$defs/D0"}}, "$defs": definitions}
    started = time.perf_counter()
    loaded = load(policy_dir, ALLOW_ALL_CALLS, make_catalog({"odd": [tool("fan", input_schema=schema)]}))

    assert time.perf_counter() - started < 30  # 2**30 typed parts would never finish
    assert any("more than 2000 typed parts" in line for line in loaded.store.status.limitations)
    assert loaded.call(SALES, "odd__fan", {"root": {"a": {"b": {}}}}).allowed


# -- bounds ----------------------------------------------------------------------------------


def test_a_huge_typed_argument_is_denied_quickly_with_a_reason(policy_dir: Path) -> None:
    loaded = load(policy_dir, ALLOW_ALL_CALLS)
    huge = "x" * (10 * 1024 * 1024)

    started = time.perf_counter()
    decision = loaded.call(SALES, "crm__search_customers", {"query": huge})
    elapsed = time.perf_counter() - started

    assert not decision.allowed
    assert decision.reason.startswith("the request is larger than the policy engine evaluates")
    assert elapsed < 5  # bounded work, not proportional to 10 MB of Cedar parsing


def test_a_huge_list_is_bounded_too(policy_dir: Path) -> None:
    loaded = load(policy_dir, ALLOW_ALL_CALLS, unusual_catalog())

    decision = loaded.call(SALES, "etl__import", {"filter": "x", "tags": ["t"] * 2_000_000})

    assert not decision.allowed and "larger than the policy engine evaluates" in decision.reason


def test_a_huge_untyped_argument_is_cut_and_still_decided(policy_dir: Path) -> None:
    loaded = load(
        policy_dir,
        ALLOW_ALL_CALLS
        + 'forbid (principal, action == Action::"etl__import", resource) '
        + 'when { context.input has untyped && context.input.untyped like "\\"secret*" };\n',
        unusual_catalog(),
    )
    huge = "y" * (10 * 1024 * 1024)

    assert loaded.call(SALES, "etl__import", {"filter": "x", "untyped": huge}).allowed
    assert not loaded.call(SALES, "etl__import", {"filter": "x", "untyped": "secret" + huge}).allowed
    assert loaded.call(SALES, "etl__import", {"filter": "x", "metadata": {str(i): huge for i in range(3)}}).allowed


def test_a_deeply_nested_argument_is_cut_and_still_decided(policy_dir: Path) -> None:
    loaded = load(
        policy_dir,
        ALLOW_ALL_CALLS
        + 'forbid (principal, action == Action::"etl__import", resource) '
        + "when { context.input has tree && context.input.tree has child && "
        + 'context.input.tree.child like "*bottom*" };\n',
        unusual_catalog(),
    )
    deep = nested(10_000)

    # The text of `child` stops at 32 levels, so the forbidden leaf 10,000 levels down is out of sight,
    # while one within the bound is seen.
    assert loaded.call(SALES, "etl__import", {"filter": "x", "tree": deep}).allowed
    assert not loaded.call(SALES, "etl__import", {"filter": "x", "tree": nested(20)}).allowed
    assert loaded.call(SALES, "etl__import", {"filter": "x", "untyped": deep, "metadata": deep}).allowed
    # Where a typed record is expected, nesting that does not fit the schema is a clear deny.
    mismatch = loaded.call(SALES, "etl__import", {"filter": "x", "options": deep})
    assert not mismatch.allowed and "input.options.dry_run" in mismatch.reason


def test_a_stranger_is_denied_whatever_the_arguments(policy_dir: Path) -> None:
    loaded = load(policy_dir, 'permit (principal in Role::"sales", action in Action::"call_tool", resource);')

    for arguments in ({"query": "a"}, {"query": 5}, {"query": "a", "limit": 2**80}, {}):
        decision = loaded.call(STRANGER, "crm__search_customers", arguments)
        assert not decision.allowed
        assert decision.reason == "no access policy allows agent 'stranger' to call tool 'crm__search_customers'"


def test_unusual_principal_names_are_safe(policy_dir: Path) -> None:
    loaded = load(policy_dir, 'permit (principal in Role::"sales", action in Action::"call_tool", resource);')
    odd = Principal(agent='a"b\\c\nd', roles=("sales",), user='u"')

    assert loaded.call(odd, "crm__search_customers", {"query": "a"}).allowed
    listed = loaded.decisions.visible_tools(Origin(odd), loaded.catalog.tools())
    assert [t.exposed for t in listed] == []  # no list_tools permit


def test_a_policy_can_refuse_untyped_text_that_was_cut(policy_dir: Path) -> None:
    loaded = load(
        policy_dir,
        ALLOW_ALL_CALLS
        + '@reason("Payloads too large to inspect are refused.")\n'
        + 'forbid (principal, action == Action::"etl__import", resource) '
        + "when { context.input has untyped && "
        + '(context.input.untyped like "*…" || context.input.untyped like "*\\"…\\"*") };\n',
        unusual_catalog(),
    )

    def run(untyped: Any):
        return loaded.call(SALES, "etl__import", {"filter": "x", "untyped": untyped})

    assert run({"small": [1, 2, 3]}).allowed
    assert run("z" * 60_000).reason == "Payloads too large to inspect are refused."
    assert run(nested(50)).reason == "Payloads too large to inspect are refused."
