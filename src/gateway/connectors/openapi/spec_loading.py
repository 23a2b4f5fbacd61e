"""Read an OpenAPI connector's spec: a file next to the connector file, or a URL cached on disk.

A spec given by URL is fetched when the gateway loads and written to a cache file; when the URL
cannot be reached at a later start, the cached copy is used (and the log says so), so an API's
documentation site being down does not take its tools away. Errors name the connector file's
line and the spec's file or URL.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import httpx
import yaml

from gateway.connectors.openapi.conversion import convert, openapi_version
from gateway.connectors.openapi.operations import Conversion
from gateway.errors import OpenApiCurationError, OpenApiSpecError
from gateway.settings.connectors import DEFAULT_MAX_DEFINITION_BYTES
from gateway.settings.openapi import OpenApiConnector

logger = logging.getLogger(__name__)

#: The largest spec read, file or URL: the largest public API descriptions are about 20 MB.
MAX_SPEC_BYTES = 32 * 1024 * 1024
_CACHE_DIR = ".openapi-cache"


def is_url(spec: str) -> bool:
    return spec.startswith(("http://", "https://"))


def connector_dir(settings: OpenApiConnector) -> Path:
    """The directory relative paths of the file are read from: the connector file's own."""
    source = settings.source
    return source.parent if source.suffix == ".toml" else source


def spec_path(settings: OpenApiConnector) -> Path:
    """Where a file spec is, or where a URL spec's cached copy is kept."""
    if is_url(settings.spec):
        digest = hashlib.sha256(settings.spec.encode()).hexdigest()[:16]
        return connector_dir(settings) / _CACHE_DIR / f"{settings.name}-{digest}.spec"
    return (connector_dir(settings) / settings.spec).resolve()


def load_spec(settings: OpenApiConnector) -> dict[str, Any]:
    """The spec document as parsed JSON/YAML; raises `OpenApiSpecError` naming the file or URL."""
    where = settings.location("spec")
    if is_url(settings.spec):
        text, origin = _fetched(settings, where)
    else:
        path = spec_path(settings)
        origin = str(path)
        try:
            if path.stat().st_size > MAX_SPEC_BYTES:
                raise OpenApiSpecError(f"{where}: the spec {path} is larger than {MAX_SPEC_BYTES // 2**20} MiB")
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise OpenApiSpecError(
                f"{where}: the spec file {path} does not exist (spec is relative to the connector file)"
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise OpenApiSpecError(f"{where}: the spec file {path} cannot be read: {exc}") from None
    document = parse_spec(text, origin)
    try:
        openapi_version(document)
    except OpenApiSpecError as exc:
        raise OpenApiSpecError(f"{where}: the spec {origin} {exc}") from None
    checked: dict[str, Any] = document
    return checked


def parse_spec(text: str, origin: str) -> Any:
    """JSON or YAML text as data; raises `OpenApiSpecError` with the line of a syntax error."""
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise OpenApiSpecError(f"{origin}:{exc.lineno}: the spec is not valid JSON: {exc.msg}") from None
    loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return yaml.load(text, Loader=loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise OpenApiSpecError(f"{origin}{line}: the spec is neither JSON nor valid YAML: {problem}") from None


def _fetched(settings: OpenApiConnector, where: str) -> tuple[str, str]:
    """The spec from its URL (then cached), or the cached copy when the URL cannot be read."""
    cache = spec_path(settings)
    try:
        with httpx.Client(timeout=settings.timeout, follow_redirects=True) as client:
            response = client.get(settings.spec, headers={"Accept": "application/json, application/yaml;q=0.9"})
            response.raise_for_status()
            if len(response.content) > MAX_SPEC_BYTES:
                raise OpenApiSpecError(
                    f"{where}: the spec at {settings.spec} is larger than {MAX_SPEC_BYTES // 2**20} MiB"
                )
            text = response.text
    except httpx.HTTPError as exc:
        if cache.exists():
            logger.warning("%s: cannot fetch %s (%s); using the copy cached at %s", where, settings.spec, exc, cache)
            return cache.read_text(encoding="utf-8"), f"{settings.spec} (cached copy {cache})"
        raise OpenApiSpecError(
            f"{where}: the spec cannot be fetched from {settings.spec} ({exc}) and no cached copy exists at {cache}"
        ) from None
    _write_cache(cache, text)
    return text, settings.spec


def _write_cache(cache: Path, text: str) -> None:
    """Replace the cached copy whole, so a crash mid-write never leaves half a spec."""
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=cache.parent, prefix=cache.name, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(temporary, cache)
    except OSError as exc:
        logger.warning("cannot cache the spec at %s: %s; the next start needs the URL again", cache, exc)


def load_conversion(
    settings: OpenApiConnector, *, max_definition_bytes: int = DEFAULT_MAX_DEFINITION_BYTES
) -> Conversion:
    """The connector's tools: its spec read and converted under its curation; errors name the file's line."""
    document = load_spec(settings)
    try:
        return convert(
            document, settings.curation, max_definition_bytes=settings.max_definition_bytes or max_definition_bytes
        )
    except OpenApiCurationError as exc:
        raise OpenApiCurationError(f"{settings.location(*exc.keys)}: {exc}", exc.keys) from None
    except OpenApiSpecError as exc:
        raise OpenApiSpecError(f"{settings.location('spec')}: the spec {spec_path(settings)} {exc}") from None
