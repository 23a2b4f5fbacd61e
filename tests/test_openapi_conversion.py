"""OpenAPI conversion: each rule that turns an operation into a tool, on small specs, and each bad input."""

from __future__ import annotations

import re
from typing import Any

import jsonschema
import pytest

from gateway.connectors.openapi.conversion import MAX_DESCRIPTION_LENGTH, convert
from gateway.connectors.openapi.operations import Conversion, Operation
from gateway.errors import OpenApiCurationError, OpenApiSpecError
from gateway.settings.openapi import OpenApiCuration

_VALID_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def spec(paths: dict[str, Any], schemas: dict[str, Any] | None = None, version: str = "3.1.0") -> dict[str, Any]:
    return {
        "openapi": version,
        "info": {"title": "Test API", "version": "1"},
        "servers": [{"url": "https://{region}.example.com/v1", "variables": {"region": {"default": "eu"}}}],
        "paths": paths,
        "components": {"schemas": schemas or {}},
    }


def curation(**settings: Any) -> OpenApiCuration:
    return OpenApiCuration.model_validate(settings)


def only(conversion: Conversion) -> Operation:
    assert len(conversion.operations) == 1, conversion.left_out
    return conversion.operations[0]


def reasons(conversion: Conversion) -> dict[str, str]:
    return {left.operation: left.reason for left in conversion.left_out}


def json_body(schema: dict[str, Any], required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


def ok(schema: dict[str, Any] | None = None) -> dict[str, Any]:
    if schema is None:
        return {"204": {"description": "done"}}
    return {"200": {"description": "ok", "content": {"application/json": {"schema": schema}}}}


# -- names ---------------------------------------------------------------------------------------


def test_the_tool_is_named_by_its_operation_id_and_servers_fill_their_variables() -> None:
    conversion = convert(spec({"/users": {"get": {"operationId": "listUsers", "responses": ok()}}}), curation())
    operation = only(conversion)
    assert operation.tool_name == "listUsers" and operation.definition["name"] == "listUsers"
    assert (operation.method, operation.path_template) == ("GET", "/users")
    assert conversion.servers == ("https://eu.example.com/v1",)


def test_an_operation_id_with_other_characters_is_sanitised_with_a_digest_keeping_two_apart() -> None:
    conversion = convert(
        spec(
            {
                "/a": {"get": {"operationId": "users.get", "responses": ok()}},
                "/b": {"get": {"operationId": "users:get", "responses": ok()}},
            }
        ),
        curation(),
    )
    names = [o.tool_name for o in conversion.operations]
    assert len(names) == 2 and len(set(names)) == 2
    assert all(name.startswith("users_get_") and _VALID_NAME.match(name) for name in names)


def test_a_long_operation_id_is_shortened_the_same_way_every_time() -> None:
    long_id = "get" + "VeryLongResourceName" * 6
    document = spec({"/a": {"get": {"operationId": long_id, "responses": ok()}}})
    first = only(convert(document, curation())).tool_name
    assert len(first) == 64 and _VALID_NAME.match(first)
    assert first == only(convert(document, curation())).tool_name
    assert first.startswith(long_id[:40])


def test_an_operation_without_an_operation_id_is_named_from_method_and_path() -> None:
    operation = only(
        convert(spec({"/users/{id}/keys": {"get": {"parameters": [_path("id")], "responses": ok()}}}), curation())
    )
    assert operation.tool_name == "get_users_id_keys" and operation.operation_id is None
    assert operation.reference == "GET /users/{id}/keys"


def test_two_operations_ending_with_one_name_are_both_left_out_naming_each_other() -> None:
    conversion = convert(
        spec(
            {
                "/a": {"get": {"operationId": "getA", "responses": ok()}},
                "/b": {"get": {"operationId": "getB", "responses": ok()}},
            }
        ),
        curation(operations={"getA": {"name": "fetch"}, "getB": {"name": "fetch"}}),
    )
    assert conversion.operations == ()
    why = reasons(conversion)
    assert "'fetch'" in why["getA"] and "getB" in why["getA"] and "getA" in why["getB"]


def test_duplicate_operation_ids_are_both_left_out_naming_the_other() -> None:
    conversion = convert(
        spec(
            {
                "/a": {"get": {"operationId": "getThing", "responses": ok()}},
                "/b": {"post": {"operationId": "getThing", "responses": ok()}},
            }
        ),
        curation(),
    )
    assert conversion.operations == ()
    assert [left.reason for left in conversion.left_out] == [
        "its operationId 'getThing' is also that of POST /b; operationIds must be unique, so none of them is "
        "converted: fix the spec",
        "its operationId 'getThing' is also that of GET /a; operationIds must be unique, so none of them is "
        "converted: fix the spec",
    ]


# -- descriptions and annotations ----------------------------------------------------------------


def test_the_description_joins_summary_and_description_bounded_and_says_deprecated() -> None:
    conversion = convert(
        spec(
            {
                "/a": {
                    "get": {
                        "operationId": "a",
                        "summary": "List things.",
                        "description": "All of them.",
                        "responses": ok(),
                    }
                },
                "/b": {"get": {"operationId": "b", "description": "x" * 5000, "deprecated": True, "responses": ok()}},
                "/c": {"get": {"operationId": "c", "responses": ok()}},
            }
        ),
        curation(operations={"c": {"description": "Rewritten."}}),
    )
    by_name = {o.tool_name: o.definition["description"] for o in conversion.operations}
    assert by_name["a"] == "List things.\n\nAll of them."
    assert by_name["b"].startswith("Deprecated. xxx") and len(by_name["b"]) == MAX_DESCRIPTION_LENGTH
    assert by_name["b"].endswith("…")
    assert by_name["c"] == "Rewritten."


def test_annotations_follow_the_method_unless_the_file_overrides_them() -> None:
    conversion = convert(
        spec(
            {
                "/r": {
                    "get": {"operationId": "read", "responses": ok()},
                    "put": {"operationId": "replace", "responses": ok()},
                    "delete": {"operationId": "remove", "responses": ok()},
                    "post": {"operationId": "create", "responses": ok()},
                },
                "/search": {"post": {"operationId": "search", "responses": ok()}},
            }
        ),
        curation(operations={"search": {"annotations": {"readOnlyHint": True, "title": "Search"}}}),
    )
    hints = {o.tool_name: o.definition["annotations"] for o in conversion.operations}
    assert hints["read"]["readOnlyHint"] is True and hints["read"]["destructiveHint"] is False
    assert hints["replace"]["idempotentHint"] is True and hints["replace"]["readOnlyHint"] is False
    assert hints["remove"]["destructiveHint"] is True
    assert hints["create"]["readOnlyHint"] is False and hints["create"]["idempotentHint"] is False
    assert hints["search"]["readOnlyHint"] is True and hints["search"]["title"] == "Search"


# -- parameters and bodies -----------------------------------------------------------------------


def _path(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def test_parameters_become_arguments_with_their_locations_and_serialisation() -> None:
    operation = only(
        convert(
            spec(
                {
                    "/users/{id}": {
                        "parameters": [_path("id")],
                        "get": {
                            "operationId": "getUser",
                            "parameters": [
                                {
                                    "name": "id",
                                    "in": "query",
                                    "schema": {"type": "integer"},
                                    "description": "A second id.",
                                },
                                {
                                    "name": "tags",
                                    "in": "query",
                                    "schema": {"type": "array", "items": {"type": "string"}},
                                    "explode": False,
                                },
                                {"name": "X-Trace", "in": "header", "schema": {"type": "string"}},
                                {"name": "Accept", "in": "header", "schema": {"type": "string"}},
                                {"name": "session", "in": "cookie", "schema": {"type": "string"}},
                            ],
                            "responses": ok(),
                        },
                    }
                }
            ),
            curation(),
        )
    )
    by_argument = {p.argument: p for p in operation.parameters}
    assert list(by_argument) == ["id", "id_query", "tags", "X-Trace", "session"]  # Accept is the client's own
    assert (by_argument["id"].location, by_argument["id"].style, by_argument["id"].explode) == ("path", "simple", False)
    assert (by_argument["id_query"].name, by_argument["id_query"].location) == ("id", "query")
    assert (by_argument["tags"].style, by_argument["tags"].explode) == ("form", False)
    schema = operation.definition["inputSchema"]
    assert schema["required"] == ["id"] and schema["additionalProperties"] is False
    assert schema["properties"]["id_query"] == {"type": "integer", "description": "A second id."}
    split = operation.split({"id": "u1", "id_query": 7, "tags": ["a"], "X-Trace": "t", "session": "s"})
    assert split.path == {"id": "u1"} and split.query == {"id": 7, "tags": ["a"]}
    assert split.header == {"X-Trace": "t"} and split.cookie == {"session": "s"} and split.body is None


def test_an_object_body_s_properties_stand_beside_the_parameters() -> None:
    operation = only(
        convert(
            spec(
                {
                    "/users/{id}": {
                        "patch": {
                            "operationId": "updateUser",
                            "parameters": [_path("id")],
                            "requestBody": json_body(
                                {
                                    "type": "object",
                                    "properties": {"name": {"type": "string"}, "email": {"type": "string"}},
                                    "required": ["name"],
                                }
                            ),
                            "responses": ok(),
                        }
                    }
                }
            ),
            curation(),
        )
    )
    assert operation.body is not None and operation.body.argument is None
    schema = operation.definition["inputSchema"]
    assert list(schema["properties"]) == ["id", "name", "email"] and schema["required"] == ["id", "name"]
    split = operation.split({"id": "u1", "name": "Ada"})
    assert split.path == {"id": "u1"} and split.body == {"name": "Ada"}


def test_a_body_property_named_like_a_parameter_puts_the_whole_body_under_body() -> None:
    operation = only(
        convert(
            spec(
                {
                    "/users/{id}": {
                        "put": {
                            "operationId": "putUser",
                            "parameters": [_path("id")],
                            "requestBody": json_body({"type": "object", "properties": {"id": {"type": "string"}}}),
                            "responses": ok(),
                        }
                    }
                }
            ),
            curation(),
        )
    )
    assert operation.body is not None and operation.body.argument == "body"
    assert operation.definition["inputSchema"]["required"] == ["id", "body"]
    split = operation.split({"id": "path-id", "body": {"id": "body-id"}})
    assert split.path == {"id": "path-id"} and split.body == {"id": "body-id"}


def test_a_body_that_is_not_a_plain_object_keeps_one_of_and_all_of_under_body() -> None:
    operation = only(
        convert(
            spec(
                {
                    "/pets": {
                        "post": {
                            "operationId": "addPet",
                            "requestBody": json_body(
                                {"oneOf": [{"$ref": "#/components/schemas/Cat"}, {"$ref": "#/components/schemas/Dog"}]},
                                required=False,
                            ),
                            "responses": ok(),
                        }
                    }
                },
                {
                    "Cat": {
                        "allOf": [{"$ref": "#/components/schemas/Pet"}, {"properties": {"purrs": {"type": "boolean"}}}]
                    },
                    "Dog": {"type": "object", "properties": {"barks": {"type": "boolean"}}},
                    "Pet": {"type": "object", "properties": {"name": {"type": "string"}}},
                },
            ),
            curation(),
        )
    )
    body = operation.definition["inputSchema"]["properties"]["body"]
    assert body["oneOf"][0]["allOf"][0]["properties"]["name"] == {"type": "string"}
    assert body["oneOf"][1]["properties"]["barks"] == {"type": "boolean"}
    assert "required" not in operation.definition["inputSchema"]
    jsonschema.Draft202012Validator.check_schema(operation.definition["inputSchema"])


def test_read_only_properties_leave_the_input_and_write_only_ones_the_output() -> None:
    user = {
        "type": "object",
        "properties": {
            "id": {"type": "string", "readOnly": True},
            "created": {"$ref": "#/components/schemas/Stamp"},
            "name": {"type": "string"},
            "password": {"type": "string", "writeOnly": True},
        },
        "required": ["id", "name"],
    }
    operation = only(
        convert(
            spec(
                {
                    "/users": {
                        "post": {
                            "operationId": "createUser",
                            "requestBody": json_body({"$ref": "#/components/schemas/User"}),
                            "responses": ok({"$ref": "#/components/schemas/User"}),
                        }
                    }
                },
                {"User": user, "Stamp": {"type": "string", "readOnly": True}},
            ),
            curation(),
        )
    )
    schema = operation.definition["inputSchema"]
    assert list(schema["properties"]) == ["name", "password"] and schema["required"] == ["name"]
    output = operation.definition["outputSchema"]
    assert list(output["properties"]) == ["id", "created", "name"] and output["required"] == ["id", "name"]


def test_openapi_30_nullable_and_exclusive_bounds_become_31_style() -> None:
    operation = only(
        convert(
            spec(
                {
                    "/a": {
                        "post": {
                            "operationId": "a",
                            "requestBody": json_body(
                                {
                                    "type": "object",
                                    "properties": {
                                        "note": {"type": "string", "nullable": True},
                                        "kind": {"type": "string", "enum": ["x", "y"], "nullable": True},
                                        "owner": {"allOf": [{"$ref": "#/components/schemas/Owner"}], "nullable": True},
                                        "ratio": {"type": "number", "minimum": 0, "exclusiveMinimum": True},
                                        "count": {"type": "integer", "maximum": 9, "exclusiveMaximum": False},
                                    },
                                }
                            ),
                            "responses": ok(),
                        }
                    }
                },
                {"Owner": {"type": "object", "properties": {"id": {"type": "string"}}, "example": {"id": "1"}}},
                version="3.0.3",
            ),
            curation(),
        )
    )
    properties = operation.definition["inputSchema"]["properties"]
    assert properties["note"] == {"type": ["string", "null"]}
    assert properties["kind"] == {"type": ["string", "null"], "enum": ["x", "y", None]}
    assert properties["owner"]["anyOf"][1] == {"type": "null"}
    assert properties["owner"]["anyOf"][0]["allOf"][0] == {"type": "object", "properties": {"id": {"type": "string"}}}
    assert properties["ratio"] == {"type": "number", "exclusiveMinimum": 0}
    assert properties["count"] == {"type": "integer", "maximum": 9}
    jsonschema.Draft202012Validator.check_schema(operation.definition["inputSchema"])


def test_a_recursive_schema_is_cut_to_a_plain_object_and_the_description_says_so() -> None:
    node = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "children": {"type": "array", "items": {"$ref": "#/components/schemas/Node"}},
        },
    }
    operation = only(
        convert(
            spec(
                {
                    "/trees": {
                        "post": {
                            "operationId": "plant",
                            "summary": "Plant a tree.",
                            "requestBody": json_body({"$ref": "#/components/schemas/Node"}),
                            "responses": ok(),
                        }
                    }
                },
                {"Node": node},
            ),
            curation(),
        )
    )
    children = operation.definition["inputSchema"]["properties"]["children"]["items"]
    assert children["type"] == "object" and "recursive" in children["description"]
    assert "children" not in children.get("properties", {})
    assert operation.definition["description"] == (
        "Plant a tree.\n\nRecursive types are not expanded where they repeat (plain objects there): Node."
    )
    jsonschema.Draft202012Validator.check_schema(operation.definition["inputSchema"])


def test_a_form_urlencoded_body_converts_with_its_encoding() -> None:
    operation = only(
        convert(
            spec(
                {
                    "/charges": {
                        "post": {
                            "operationId": "createCharge",
                            "requestBody": {
                                "content": {
                                    "application/x-www-form-urlencoded": {
                                        "schema": {
                                            "type": "object",
                                            "properties": {
                                                "amount": {"type": "integer"},
                                                "metadata": {"type": "object"},
                                            },
                                        },
                                        "encoding": {"metadata": {"style": "deepObject", "explode": True}},
                                    }
                                }
                            },
                            "responses": ok(),
                        }
                    }
                }
            ),
            curation(),
        )
    )
    assert operation.body is not None and operation.body.content_type == "application/x-www-form-urlencoded"
    assert dict(operation.body.encoding["metadata"]) == {"style": "deepObject", "explode": True}
    assert list(operation.definition["inputSchema"]["properties"]) == ["amount", "metadata"]


def test_non_json_bodies_are_left_out_with_the_reason() -> None:
    conversion = convert(
        spec(
            {
                "/files": {
                    "post": {
                        "operationId": "upload",
                        "requestBody": {"content": {"multipart/form-data": {"schema": {"type": "object"}}}},
                        "responses": ok(),
                    }
                },
                "/xml": {
                    "put": {
                        "operationId": "putXml",
                        "requestBody": {"content": {"application/xml": {"schema": {"type": "object"}}}},
                        "responses": ok(),
                    }
                },
                "/both": {
                    "post": {
                        "operationId": "both",
                        "requestBody": {
                            "content": {
                                "application/xml": {},
                                "application/json": {
                                    "schema": {"type": "object", "properties": {"a": {"type": "string"}}}
                                },
                            }
                        },
                        "responses": ok(),
                    }
                },
            }
        ),
        curation(),
    )
    assert [o.tool_name for o in conversion.operations] == ["both"]
    why = reasons(conversion)
    assert why["upload"].startswith("its request body is multipart/form-data only; only JSON and form-urlencoded")
    assert why["putXml"].startswith("its request body is application/xml only")


def test_the_output_schema_comes_from_the_first_2xx_json_object_response() -> None:
    conversion = convert(
        spec(
            {
                "/one": {
                    "get": {
                        "operationId": "one",
                        "responses": {
                            "404": {"description": "no"},
                            "201": {
                                "description": "made",
                                "content": {
                                    "application/json": {
                                        "schema": {"type": "object", "properties": {"id": {"type": "string"}}}
                                    }
                                },
                            },
                        },
                    }
                },
                "/many": {
                    "get": {"operationId": "many", "responses": ok({"type": "array", "items": {"type": "string"}})}
                },
                "/none": {"delete": {"operationId": "none", "responses": ok()}},
            }
        ),
        curation(),
    )
    by_name = {o.tool_name: o for o in conversion.operations}
    assert by_name["one"].definition["outputSchema"] == {"type": "object", "properties": {"id": {"type": "string"}}}
    assert "outputSchema" not in by_name["many"].definition
    assert by_name["many"].response_schema == {"type": "array", "items": {"type": "string"}}
    assert by_name["none"].response_schema is None


# -- references ----------------------------------------------------------------------------------


def test_an_unresolvable_ref_leaves_its_operation_out_and_the_rest_converts() -> None:
    conversion = convert(
        spec(
            {
                "/a": {"get": {"operationId": "good", "responses": ok()}},
                "/b": {
                    "post": {
                        "operationId": "dangling",
                        "requestBody": json_body({"$ref": "#/components/schemas/Missing"}),
                        "responses": ok(),
                    }
                },
                "/c": {
                    "post": {
                        "operationId": "external",
                        "requestBody": json_body({"$ref": "other.yaml#/Thing"}),
                        "responses": ok(),
                    }
                },
                "/d": {
                    "get": {
                        "operationId": "badParam",
                        "parameters": [{"$ref": "#/components/parameters/Nope"}],
                        "responses": ok(),
                    }
                },
            }
        ),
        curation(),
    )
    assert [o.tool_name for o in conversion.operations] == ["good"]
    why = reasons(conversion)
    assert why["dangling"] == "$ref '#/components/schemas/Missing' points at nothing in the document"
    assert why["external"].startswith("$ref 'other.yaml#/Thing' points outside the document: bundle the spec")
    assert why["badParam"] == "$ref '#/components/parameters/Nope' points at nothing in the document"


def test_a_ref_that_refers_to_itself_is_left_out_not_looped_on() -> None:
    document = spec(
        {
            "/a": {
                "get": {"operationId": "loop", "parameters": [{"$ref": "#/components/parameters/P"}], "responses": ok()}
            }
        }
    )
    document["components"]["parameters"] = {"P": {"$ref": "#/components/parameters/P"}}
    conversion = convert(document, curation())
    assert reasons(conversion) == {"loop": "$ref '#/components/parameters/P' refers back to itself"}


def test_a_path_parameter_missing_from_the_path_leaves_the_operation_out() -> None:
    conversion = convert(spec({"/users/{id}": {"get": {"operationId": "noParam", "responses": ok()}}}), curation())
    assert reasons(conversion) == {"noParam": "its path has {id} but no path parameter of that name"}


# -- not OpenAPI ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"swagger": "2.0", "paths": {}}, "is Swagger 2.0, not OpenAPI 3: convert it to OpenAPI 3 first"),
        ({"openapi": "2.5.0", "paths": {}}, "is OpenAPI 2.5.0; the gateway reads OpenAPI 3.0 and 3.1"),
        ({"title": "a README"}, "is not an OpenAPI document: it has no 'openapi' version key"),
        (["a", "list"], "is not an OpenAPI document: its top level is not a mapping of keys"),
        ({"openapi": "3.1.0", "paths": ["/a"]}, "has a 'paths' key that is not a mapping of paths to operations"),
    ],
)
def test_a_document_that_is_not_openapi_3_is_refused_with_why(document: Any, message: str) -> None:
    with pytest.raises(OpenApiSpecError, match=re.escape(message)):
        convert(document, curation())


# -- curation ------------------------------------------------------------------------------------


def _shop() -> dict[str, Any]:
    return spec(
        {
            "/orders": {
                "get": {"operationId": "listOrders", "tags": ["orders"], "responses": ok()},
                "post": {
                    "operationId": "createOrder",
                    "tags": ["orders"],
                    "parameters": [
                        {"name": "tenant", "in": "query", "required": True, "schema": {"type": "string"}},
                        {"name": "dry_run", "in": "query", "schema": {"type": "boolean"}},
                    ],
                    "requestBody": json_body(
                        {
                            "type": "object",
                            "properties": {
                                "item": {"type": "string"},
                                "channel": {"type": "string"},
                                "note": {"type": "string"},
                            },
                            "required": ["item", "channel"],
                        }
                    ),
                    "responses": ok(),
                },
            },
            "/orders/{id}": {
                "parameters": [_path("id")],
                "delete": {"operationId": "deleteOrder", "tags": ["orders"], "responses": ok()},
            },
            "/admin/users": {"get": {"operationId": "listAdminUsers", "tags": ["admin"], "responses": ok()}},
            "/health": {"get": {"responses": ok()}},
        }
    )


def test_select_includes_by_tag_method_path_or_id_and_excludes_with_the_reason() -> None:
    conversion = convert(
        _shop(),
        curation(
            select={
                "include": [
                    {"tags": ["orders"]},
                    {"operations": ["GET /health"]},
                    {"paths": ["/admin/**"], "methods": ["GET", "POST"]},
                ],
                "exclude": [{"methods": ["DELETE"]}],
            }
        ),
    )
    assert [o.tool_name for o in conversion.operations] == ["listOrders", "createOrder", "listAdminUsers", "get_health"]
    assert reasons(conversion) == {"deleteOrder": "excluded by [[select.exclude]] rule 1"}


def test_path_globs_match_one_segment_with_a_star_and_many_with_two() -> None:
    one = convert(_shop(), curation(select={"include": [{"paths": ["/orders/*"]}]}))
    assert [o.tool_name for o in one.operations] == ["deleteOrder"]
    assert reasons(one)["listOrders"] == "not selected: no [[select.include]] rule matches it"
    many = convert(_shop(), curation(select={"include": [{"paths": ["/orders**"]}]}))
    assert [o.tool_name for o in many.operations] == ["listOrders", "createOrder", "deleteOrder"]


def test_fixed_values_are_hidden_from_the_agent_and_always_sent() -> None:
    conversion = convert(
        _shop(),
        curation(
            select={"include": [{"operations": ["createOrder"]}]},
            operations={
                "createOrder": {
                    "name": "place_order",
                    "hide": ["dry_run", "note"],
                    "fixed": {"tenant": "acme", "channel": "agent"},
                }
            },
        ),
    )
    operation = only(conversion)
    schema = operation.definition["inputSchema"]
    assert operation.tool_name == "place_order"
    assert list(schema["properties"]) == ["item"] and schema["required"] == ["item"]
    assert dict(operation.fixed) == {"tenant": "acme"}
    assert operation.body is not None and dict(operation.body.fixed) == {"channel": "agent"}
    split = operation.split({"item": "book", "tenant": "evil", "dry_run": True, "note": "smuggled", "channel": "x"})
    assert split.query == {"tenant": "acme"}
    assert split.body == {"item": "book", "channel": "agent"}


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"operations": {"listOrder": {}}}, "[operations.listOrder] names no operation of the spec"),
        ({"operations": {"createOrder": {"hide": ["tenant"]}}}, "hides the required parameter 'tenant'"),
        ({"operations": {"createOrder": {"hide": ["item"]}}}, "hides the required body property 'item'"),
        ({"operations": {"createOrder": {"fixed": {"tennant": "a"}}}}, "hides or fixes 'tennant', which is neither"),
        ({"select": {"include": [{"operations": ["listOrderz"]}]}}, "names operation 'listOrderz', which the spec"),
        ({"select": {"include": [{"tags": ["billing"]}]}}, "[[select.include]] rule 1 matches no operation"),
        (
            {"select": {"include": [{"tags": ["admin"]}]}, "operations": {"listOrders": {}}},
            "[operations.listOrders] configures an operation that select leaves out",
        ),
    ],
)
def test_curation_naming_what_the_spec_lacks_is_refused(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(OpenApiCurationError, match=re.escape(message)):
        convert(_shop(), curation(**settings))


def test_a_close_operation_id_is_suggested() -> None:
    with pytest.raises(OpenApiCurationError, match="closest: 'listOrders'"):
        convert(_shop(), curation(operations={"listOrder": {}}))


def test_a_definition_larger_than_the_bound_is_left_out_after_dropping_its_output_schema() -> None:
    big = {
        "type": "object",
        "properties": {f"field_{i}": {"type": "string", "description": "d" * 100} for i in range(60)},
    }
    conversion = convert(
        spec({"/a": {"post": {"operationId": "big", "requestBody": json_body(big), "responses": ok(big)}}}),
        curation(),
        max_definition_bytes=6000,
    )
    assert re.match(
        r"its tool definition is \d+ KiB, more than the 5 KiB a tool may have: hide", reasons(conversion)["big"]
    )
    fits = convert(
        spec({"/a": {"get": {"operationId": "big", "responses": ok(big)}}}), curation(), max_definition_bytes=6000
    )
    assert "outputSchema" not in only(fits).definition
