"""Resource URIs as agents see them: `gateway://<connector>/<the backend's own URI>`.

Two backends may offer the same URI or template (`file:///README.md`, `test://items/{id}`),
so a backend's URI alone cannot say which backend serves it. Every resource URI an agent sees
names its connector:

- exposed = `gateway://` + connector + `/` + the backend's URI, kept verbatim (not encoded):
  `test://items/{id}` of connector `crm` is `gateway://crm/test://items/{id}`.
- Connector names hold only letters, digits, `_` and `-`, so the first `/` after the prefix
  ends the name: two connectors' identical URIs are two exposed URIs, and an exposed URI
  splits back into the connector and the backend's URI without any lookup.
- A URI template is exposed by the same rule. The prefix is literal text without `{`, so the
  exposed template expands to the exposed form of what the backend's template expands to with
  the same variables, and that URI reads back to the backend with the backend's own URI.
- The form depends only on the connector's name and the backend's URI, so it is the same on
  every replica and after every restart, and one form serves everywhere: listings, reads,
  URIs inside tool, prompt and read results, `notifications/resources/updated`, access
  policies (`Resource::"gateway://crm/test://items/42"`) and the audit log.

URIs inside results are rewritten only where a result holds resource content; a tool result
without `resource_link` or embedded `resource` blocks is returned as it came, uncopied.
"""

from __future__ import annotations

from typing import Any

from gateway.connectors.base import JsonObject

PREFIX = "gateway://"
_RESOURCE_BLOCKS = frozenset({"resource_link", "resource"})


def exposed_uri(connector: str, uri: str) -> str:
    """The URI (or URI template) an agent sees for a backend's own `uri`."""
    return f"{PREFIX}{connector}/{uri}"


def split_uri(exposed: str) -> tuple[str, str] | None:
    """(connector, the backend's URI) of an exposed URI, or None when it is not in the exposed form."""
    if not exposed.startswith(PREFIX):
        return None
    connector, slash, uri = exposed[len(PREFIX) :].partition("/")
    if not slash or not connector:
        return None
    return connector, uri


def expose_read_result(connector: str, result: JsonObject) -> JsonObject:
    """A `resources/read` result whose `contents[].uri` name the resources as the agent knows them."""
    contents = result.get("contents")
    if type(contents) is not list:
        return result
    exposed = [_with_exposed_uri(connector, item) for item in contents]
    return {**result, "contents": exposed}


def expose_tool_result(connector: str, result: JsonObject) -> JsonObject:
    """A `tools/call` result whose resource links and embedded resources name exposed URIs.

    Every call passes here: a result without resource blocks is returned as it is, after one
    look at each content block's type.
    """
    content = result.get("content")
    if type(content) is not list:
        return result
    for block in content:
        if type(block) is dict and block.get("type") in _RESOURCE_BLOCKS:
            return {**result, "content": [expose_content(connector, item) for item in content]}
    return result


def expose_prompt_result(connector: str, result: JsonObject) -> JsonObject:
    """A `prompts/get` result whose messages' resource links and embedded resources name exposed URIs."""
    messages = result.get("messages")
    if type(messages) is not list:
        return result
    exposed = [
        {**message, "content": expose_content(connector, message["content"])}
        if type(message) is dict and "content" in message
        else message
        for message in messages
    ]
    return {**result, "messages": exposed}


def expose_content(connector: str, block: Any) -> Any:
    """One content block with its resource URI exposed; other blocks are returned unchanged."""
    if type(block) is not dict:
        return block
    kind = block.get("type")
    if kind == "resource_link":
        return _with_exposed_uri(connector, block)
    if kind == "resource" and type(block.get("resource")) is dict:
        return {**block, "resource": _with_exposed_uri(connector, block["resource"])}
    return block


def _with_exposed_uri(connector: str, item: Any) -> Any:
    if type(item) is dict and isinstance(item.get("uri"), str):
        return {**item, "uri": exposed_uri(connector, item["uri"])}
    return item
