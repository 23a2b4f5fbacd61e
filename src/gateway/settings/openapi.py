"""A REST API behind the gateway: a connector file of `kind = "openapi"`.

Curation comes first: converting every operation of a large API gives models hundreds of
near-duplicate tools with spec-writer descriptions, so the file says which operations become
tools (`[[select.include]]`, `[[select.exclude]]`), and per operation (`[operations.<operationId>]`)
renames it, rewrites its description, hides or fixes parameters and sets annotations.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from gateway.settings.base import SettingsModel
from gateway.settings.connectors import ConnectorBase
from gateway.settings.openapi_http import DEFAULT_MAX_RESPONSE_BYTES, BackendAuth, BackendTls, RetryPolicy

HTTP_METHODS = ("GET", "PUT", "POST", "DELETE", "OPTIONS", "HEAD", "PATCH", "TRACE")
_ANNOTATION_KEYS = ("title", "readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint")


class OperationSelector(SettingsModel):
    """One rule of `select`: an operation matches when it matches every field the rule sets."""

    operations: tuple[str, ...] = Field(
        default=(), description="operationIds (operations without one: `METHOD /path`, e.g. `GET /health`)."
    )
    tags: tuple[str, ...] = Field(default=(), description="Tags: the operation carries at least one of them.")
    methods: tuple[str, ...] = Field(default=(), description='HTTP methods, e.g. `["GET", "HEAD"]`.')
    paths: tuple[str, ...] = Field(
        default=(),
        description='Path globs: `*` is one path segment, `**` any number, e.g. `"/customers/*"`, `"/admin/**"`.',
    )

    @field_validator("methods")
    @classmethod
    def _known_methods(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        upper = tuple(m.upper() for m in value)
        unknown = [m for m in upper if m not in HTTP_METHODS]
        if unknown:
            raise ValueError(f"unknown HTTP method {unknown[0]!r}: use one of {', '.join(HTTP_METHODS)}")
        return upper

    @field_validator("paths")
    @classmethod
    def _rooted_paths(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for glob in value:
            if not glob.startswith("/"):
                raise ValueError(f"path glob {glob!r} must start with '/', like the spec's paths")
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> OperationSelector:
        if not (self.operations or self.tags or self.methods or self.paths):
            raise ValueError("a select rule needs at least one of operations, tags, methods or paths")
        return self


class OperationSelection(SettingsModel):
    """Which operations become tools: those any `include` rule matches (all, with none) and no `exclude` rule does."""

    include: tuple[OperationSelector, ...] = Field(
        default=(), description="Rules of the operations to convert; none: every operation of the spec."
    )
    exclude: tuple[OperationSelector, ...] = Field(
        default=(), description="Rules of the operations left out even when an include rule matches them."
    )


class OperationCuration(SettingsModel):
    """`[operations.<operationId>]`: how one operation is presented to agents."""

    name: str | None = Field(
        default=None,
        description="The tool's name instead of the one derived from the operationId: letters, digits, `_`, `-`.",
    )
    description: str | None = Field(default=None, description="The tool's description instead of the spec's.")
    hide: tuple[str, ...] = Field(
        default=(),
        description=(
            "Parameters (or top-level body properties) agents do not see; optional ones only, or give them a "
            "`fixed` value. The API's own default applies."
        ),
    )
    fixed: dict[str, Any] = Field(
        default={},
        description=(
            'Parameters (or top-level body properties) always sent with this value, e.g. `{tenant = "acme"}`; '
            "agents neither see nor can override them."
        ),
    )
    annotations: dict[str, Any] = Field(
        default={},
        description=(
            "Tool annotations overriding those derived from the method (`readOnlyHint`, `destructiveHint`, "
            "`idempotentHint`, `openWorldHint`, `title`)."
        ),
    )

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str | None) -> str | None:
        import re

        if value is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", value):
            raise ValueError("must be 1 to 64 letters, digits, '_' or '-' (the tool-name rules of MCP clients)")
        return value

    @field_validator("annotations")
    @classmethod
    def _known_annotations(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key, setting in value.items():
            if key not in _ANNOTATION_KEYS:
                raise ValueError(f"unknown annotation {key!r}: use {', '.join(_ANNOTATION_KEYS)}")
            if key == "title" and not isinstance(setting, str):
                raise ValueError("annotation 'title' must be a string")
            if key != "title" and not isinstance(setting, bool):
                raise ValueError(f"annotation {key!r} must be true or false")
        return value


class OpenApiCuration(SettingsModel):
    """Which operations of a spec become tools, and how each is presented."""

    select: OperationSelection = Field(
        default=OperationSelection(),
        description="Which operations become tools (`[[select.include]]`, `[[select.exclude]]`).",
    )
    operations: dict[str, OperationCuration] = Field(
        default={},
        description=(
            "Per-operation presentation, keyed by operationId (operations without one: the derived tool name)."
        ),
    )


class OpenApiConnector(ConnectorBase, OpenApiCuration):
    """A REST API described by an OpenAPI 3.0 or 3.1 document, its operations curated into tools."""

    kind: Literal["openapi"] = Field(description="A REST API described by an OpenAPI document.")
    spec: str = Field(
        description=(
            "The OpenAPI document (JSON or YAML): a path relative to this file, or an http(s) URL fetched when the "
            "gateway loads and cached on disk next to this file, so a restart works while the URL does not."
        )
    )
    base_url: str | None = Field(
        default=None,
        description="The API's root URL, operation paths are joined to it; unset: the spec's first `servers` URL.",
    )

    auth: BackendAuth | None = Field(
        default=None,
        description=(
            "The connector's own credentials at the API (`[auth]`, `type` = `api_key`, `bearer`, `basic` or "
            "`oauth2_client_credentials`); the agent's never reach it. Unset: none."
        ),
    )
    tls: BackendTls = Field(
        default=BackendTls(), description="TLS to the API (`[tls]`): client certificate (mTLS), CA bundle, verify."
    )
    retries: RetryPolicy = Field(
        default=RetryPolicy(),
        description=(
            "Retries of idempotent calls (GET, HEAD, PUT, DELETE, OPTIONS) on connection errors and 429/502/503/504."
        ),
    )
    max_response_bytes: int = Field(
        default=DEFAULT_MAX_RESPONSE_BYTES,
        ge=1,
        description="Largest API answer read (decompressed); a larger one is a tool error and is not parsed.",
    )

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @property
    def curation(self) -> OpenApiCuration:
        """The curation part of the file, what `convert` takes."""
        return OpenApiCuration(select=self.select, operations=self.operations)
