"""Exposed names: valid for LLM function calling, deterministic, and routed back to the right backend."""

from __future__ import annotations

import re

import pytest

from gateway.catalog import MAX_NAME_LENGTH, Catalog, exposed_name
from gateway.config import McpStdioConnector, ToolOverride
from gateway.connectors.base import Listing
from gateway.errors import UnknownResource, UnknownTool

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
