"""Exposed names: valid for LLM function calling, deterministic, and routed back to the right backend."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway.catalog import MAX_NAME_LENGTH, Catalog, exposed_name
from gateway.config import load_connector
from gateway.connectors.base import Listing
from gateway.errors import UnknownResource, UnknownTool
from gateway.policy import PolicyEngine
from gateway.settings.connectors import McpStdioConnector, ToolOverride

LLM_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def connector(name: str, **kwargs: object) -> McpStdioConnector:
    return McpStdioConnector(name=name, kind="mcp-stdio", command=("x",), **kwargs)  # type: ignore[arg-type]


def tool(name: str, **extra: object) -> dict[str, object]:
    return {"name": name, "inputSchema": {"type": "object"}, **extra}


def test_plain_names_are_connector_separator_name() -> None:
    assert exposed_name("crm", "search_customers", "__") == "crm__search_customers"
    assert exposed_name("crm", "search", "-") == "crm-search"


@pytest.mark.parametrize(
    "original",
    ["get.customer", "buscar cliente", "ツール", "a/b:c", "x" * 200, "very_long_" * 7, "dots.and.more" * 10],
)
def test_unsafe_or_long_names_become_valid_and_stable(original: str) -> None:
    name = exposed_name("crm", original, "__")
    assert LLM_NAME.fullmatch(name)
    assert len(name) <= MAX_NAME_LENGTH
    assert name == exposed_name("crm", original, "__")


def test_shortened_names_of_different_tools_differ() -> None:
    first = exposed_name("crm", "a" * 100 + "1", "__")
    second = exposed_name("crm", "a" * 100 + "2", "__")
    assert first != second
    # Sanitising alone would make these two collide; the digest keeps them apart.
    assert exposed_name("crm", "get.customer", "__") != exposed_name("crm", "get_customer", "__")


def test_catalog_routes_exposed_names_to_backend_names_and_applies_overrides() -> None:
    crm = connector(
        "crm",
        labels=("customer-data",),
        tools={
            "update": ToolOverride(labels=("writes",), description="Changed description."),
            "drop": ToolOverride(enabled=False),
        },
    )
    catalog = Catalog([crm, connector("billing")])
    assert catalog.update("crm", Listing(tools=(tool("update", description="orig"), tool("drop"), tool("get.one"))))
    catalog.update("billing", Listing(tools=(tool("update"),)))
    names = [entry.exposed for entry in catalog.tools()]
    assert "crm__drop" not in names
    update = catalog.resolve_tool("crm__update")
    assert (update.connector, update.original) == ("crm", "update")
    assert update.definition["description"] == "Changed description."
    assert update.labels == ("customer-data", "writes")
    dotted = next(e for e in catalog.tools() if e.original == "get.one")
    assert catalog.resolve_tool(dotted.exposed).original == "get.one"
    assert catalog.resolve_tool("billing__update").connector == "billing"
    with pytest.raises(UnknownTool, match="unknown tool 'crm__drop'"):
        catalog.resolve_tool("crm__drop")


def test_same_listing_again_is_not_a_change() -> None:
    catalog = Catalog([connector("crm")])
    listing = Listing(tools=(tool("a"),))
    assert catalog.update("crm", listing) is True
    assert catalog.update("crm", listing) is False
    assert catalog.update("crm", Listing(tools=(tool("a"), tool("b")))) is True


def test_identical_resource_uris_of_two_backends_stay_distinct_and_route_back() -> None:
    def offering_the_same() -> Catalog:
        catalog = Catalog([connector("crm"), connector("files")])
        for name in ("crm", "files"):
            catalog.update(
                name,
                Listing(
                    resources=({"uri": "test://static/hello.txt", "name": "hello"},),
                    resource_templates=({"uriTemplate": "test://items/{id}", "name": "item"},),
                ),
            )
        return catalog

    catalog = offering_the_same()
    assert [(r.exposed, r.connector, r.original, r.definition["name"]) for r in catalog.resources()] == [
        ("gateway://crm/test://static/hello.txt", "crm", "test://static/hello.txt", "crm__hello"),
        ("gateway://files/test://static/hello.txt", "files", "test://static/hello.txt", "files__hello"),
    ]
    assert [t.definition["uriTemplate"] for t in catalog.resource_templates()] == [
        "gateway://crm/test://items/{id}",
        "gateway://files/test://items/{id}",
    ]
    for resource in catalog.resources():
        route = catalog.resolve_resource(resource.exposed)
        assert (route.connector, route.uri, route.exposed) == (resource.connector, resource.original, resource.exposed)
    # An exposed template expanded with the backend's variables routes back with the backend's own URI.
    for template in catalog.resource_templates():
        route = catalog.resolve_resource(template.exposed.replace("{id}", "a/b?c=1"))
        assert (route.connector, route.uri) == (template.connector, "test://items/a/b?c=1")
    # Stable: a catalog built again (as after a restart) exposes the same URIs.
    assert [r.exposed for r in offering_the_same().resources()] == [r.exposed for r in catalog.resources()]


def test_resource_uris_outside_the_exposed_form_are_refused_with_what_to_use() -> None:
    catalog = Catalog([connector("crm"), connector("files")])
    catalog.update("crm", Listing(resources=({"uri": "crm://schema", "name": "schema"},)))
    with pytest.raises(UnknownResource, match="did you mean 'gateway://crm/crm://schema'"):
        catalog.resolve_resource("crm://schema")
    with pytest.raises(UnknownResource, match="gateway://<connector>/<the backend's URI>"):
        catalog.resolve_resource("https://elsewhere/")
    with pytest.raises(UnknownResource, match="there is no backend named 'finance'"):
        catalog.resolve_resource("gateway://finance/crm://schema")
    with pytest.raises(UnknownResource):
        catalog.resolve_resource("gateway://crm")


def test_override_naming_no_listed_tool_withholds_the_connector_and_names_file_line_and_closest(
    tmp_path: Path,
) -> None:
    file = tmp_path / "finance.toml"
    file.write_text('kind = "mcp-stdio"\ncommand = ["x"]\n\n[tools.pay_invoce]\nenabled = false\n')
    finance = load_connector(file)
    catalog = Catalog([finance, connector("crm")])
    catalog.update("crm", Listing(tools=(tool("search"),)))
    catalog.update("finance", Listing(tools=(tool("pay_invoice"), tool("list_invoices"), tool("refund"))))
    # The tool the override meant to disable must not stay callable, and nothing is guessed.
    assert [entry.exposed for entry in catalog.tools()] == ["crm__search"]
    with pytest.raises(UnknownTool):
        catalog.resolve_tool("finance__pay_invoice")
    (problem,) = catalog.problems()["finance"]
    assert problem.startswith(f"{file.resolve()}:4: [tools.pay_invoce] names no tool of backend 'finance'")
    assert "closest tool names: 'pay_invoice'" in problem and "'refund'" not in problem
    assert "none of this connector's tools is offered to agents" in problem
    assert "crm" not in catalog.problems()
    # Policies naming the withheld tools still validate against them.
    assert {entry.exposed for entry in catalog.policy_tools()} >= {"finance__pay_invoice", "finance__refund"}
    # Once the backend lists the name (or the file is fixed), the connector is served again.
    assert catalog.update("finance", Listing(tools=(tool("pay_invoce"), tool("refund"))))
    assert catalog.problems() == {}
    assert {entry.exposed for entry in catalog.tools()} == {"crm__search", "finance__refund"}


def test_override_problem_lists_the_tools_when_no_name_is_close(tmp_path: Path) -> None:
    file = tmp_path / "crm.toml"
    file.write_text('kind = "mcp-stdio"\ncommand = ["x"]\n[tools."get.everything"]\nlabels = ["x"]\n')
    catalog = Catalog([load_connector(file)])
    catalog.update("crm", Listing(tools=(tool("search"), tool("update"))))
    (problem,) = catalog.problems()["crm"]
    assert ":3: [tools.\"get.everything\"] names no tool of backend 'crm' (it lists 'search', 'update')" in problem


def test_two_tools_sharing_an_exposed_name_are_both_refused_and_reported_on_both_connectors() -> None:
    # Connector names like these are refused at load; a catalog built from definitions still checks.
    catalog = Catalog([connector("sales"), connector("sales__crm")])
    catalog.update("sales", Listing(tools=(tool("crm__search"), tool("orders"))))
    catalog.update("sales__crm", Listing(tools=(tool("search"),), prompts=(tool("brief"),)))
    catalog.update("sales", Listing(tools=(tool("crm__search"), tool("orders")), prompts=(tool("crm__brief"),)))
    assert [entry.exposed for entry in catalog.tools()] == ["sales__orders"]
    assert [entry.exposed for entry in catalog.policy_tools()] == ["sales__orders"]
    assert list(catalog.prompts()) == []
    with pytest.raises(UnknownTool):
        catalog.resolve_tool("sales__crm__search")
    tools_problem = (
        "tools 'crm__search' of connector 'sales' and 'search' of connector 'sales__crm' would both be exposed as "
        "'sales__crm__search'; none of them is offered"
    )
    prompts_problem = "prompts 'crm__brief' of connector 'sales' and 'brief' of connector 'sales__crm' would both"
    for name in ("sales", "sales__crm"):
        problems = catalog.problems()[name]
        assert any(p.startswith(tools_problem) for p in problems), problems
        assert any(p.startswith(prompts_problem) for p in problems), problems


def test_a_rewritten_name_that_meets_a_real_one_refuses_both() -> None:
    catalog = Catalog([connector("crm")])
    rewritten = exposed_name("crm", "get.customer", "__")
    literal = rewritten.removeprefix("crm__")
    catalog.update("crm", Listing(tools=(tool("get.customer"), tool(literal), tool("search"))))
    assert [entry.exposed for entry in catalog.tools()] == ["crm__search"]
    (problem,) = catalog.problems()["crm"]
    assert f"'get.customer' of connector 'crm' and '{literal}' of connector 'crm' would both" in problem
    # A backend that lists one tool twice has one tool, not a collision.
    catalog.update("crm", Listing(tools=(tool("search"), tool("search"))))
    assert catalog.problems() == {} and [entry.exposed for entry in catalog.tools()] == ["crm__search"]


def test_policies_naming_withheld_tools_still_load(tmp_path: Path) -> None:
    file = tmp_path / "finance.toml"
    file.write_text('kind = "mcp-stdio"\ncommand = ["x"]\n[tools.pay_invoce]\nlabels = ["payments"]\n')
    catalog = Catalog([load_connector(file)])
    catalog.update("finance", Listing(tools=(tool("pay_invoice"),)))
    access = tmp_path / "policies" / "access"
    access.mkdir(parents=True)
    (access / "finance.cedar").write_text('permit (principal, action == Action::"finance__pay_invoice", resource);\n')
    engine = PolicyEngine(tmp_path / "policies")
    # One typo in a connector file must not leave every request of every backend denied.
    engine.store.load(catalog)
    assert engine.store.status.loaded and engine.store.status.policy_count == 1
    assert list(catalog.tools()) == []
