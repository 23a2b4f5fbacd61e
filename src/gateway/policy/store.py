"""The access policy files, loaded against the live catalog: parsed once per load, swapped whole.

`load` reads `<policy_dir>/access/*.cedar`, generates the Cedar schema from the live catalog,
validates every policy against it and builds the parsed policy set, schema and entities. Any
failure keeps the set that was working before (none at first start: everything is denied) and
is reported with file and line. A policy that names the actions of a connector that has never
listed waits, left out, when leaving it out cannot allow anything (see `waiting.py`); it is
loaded at the first load after that connector lists.

What a load produces is one `PolicyState`, published as `current` in a single assignment: a
decision reads it once and decides on it whole, without a lock, however long a reload takes.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cedarpy
import orjson

from gateway.catalog import Catalog
from gateway.errors import PolicyLoadError
from gateway.policy.decision import PolicyRef
from gateway.policy.entities import EntityStore
from gateway.policy.loader import LoadedPolicies, parse_policies, policy_set, read_policy_files, validation_errors
from gateway.policy.schema import GeneratedSchema, generate_schema
from gateway.policy.slices import PolicySlices
from gateway.policy.waiting import Unlisted, WaitingPolicy, sort_problems

#: One logger for loading and deciding: operators know both as the policy engine.
logger = logging.getLogger("gateway.policy.engine")

#: What a failing schema generator may raise on a malformed tool definition.
_GENERATOR_FAILURES = (TypeError, ValueError, AttributeError, KeyError, RecursionError)


@dataclass(frozen=True, slots=True)
class PolicyStatus:
    """What `gateway policy status`, `/readyz` and the console say about the access policies."""

    loaded: bool
    policy_count: int
    loaded_at: datetime | None
    last_error: str | None
    limitations: tuple[str, ...]
    #: Policies left out until the connectors they name have listed, one readable line each.
    waiting: tuple[str, ...] = ()


@dataclass(frozen=True)
class PolicyState:
    """Everything one successful load produced; replaced whole, never changed (caches aside)."""

    loaded: LoadedPolicies
    schema: GeneratedSchema
    schema_handle: cedarpy.Schema
    entities: EntityStore
    slices: PolicySlices
    loaded_at: datetime
    waiting: tuple[WaitingPolicy, ...] = ()
    #: Connectors that had never listed at this load: their resources are denied until the next load,
    #: since a policy about them may be waiting (tools and prompts are checked against the schema).
    unlisted: frozenset[str] = frozenset()
    #: Which targets each principal may see, kept here so that a reload drops the answers with the set.
    visibility: dict[tuple[Any, ...], bool] = field(default_factory=dict)


class PolicyStore:
    """Loads the policy files and holds the set in force (`current`); see the module docstring."""

    def __init__(self, policy_dir: Path) -> None:
        self._access_dir = Path(policy_dir) / "access"
        #: The set in force, or None while no set has ever loaded; only `load` replaces it.
        self.current: PolicyState | None = None
        self._lock = threading.Lock()
        self._fingerprint: object = None
        self._last_error: str | None = None
        self._logged_failure: tuple[object, str] | None = None
        self._last_schema: GeneratedSchema | None = None

    def load(self, catalog: Catalog) -> None:
        """Load the files against `catalog`; on failure raise PolicyLoadError and keep the previous set.

        A failure is not logged here: the caller reports it (the CLI prints it, the running
        gateway logs it through `try_load`), so each error reaches its reader once.
        """
        with self._lock:
            fingerprint = self._current_fingerprint()
            try:
                state = self._build(catalog)
            except PolicyLoadError as exc:
                self._last_error = str(exc)
                raise
            finally:
                self._fingerprint = fingerprint
            self.current = state
            self._last_error = None
            self._logged_failure = None
        logger.info(
            "access policies loaded",
            extra={"policies": len(state.loaded), "files": [str(f.path) for f in state.loaded.files]},
        )
        if state.waiting:
            connectors = ", ".join(dict.fromkeys(name for policy in state.waiting for name in policy.connectors))
            logger.warning(
                "access policies wait for connectors that have not listed their tools yet (%s): %d not loaded; "
                "they load when those connectors list, and until then their tools are unavailable",
                connectors,
                len(state.waiting),
                extra={"waiting": [policy.describe() for policy in state.waiting]},
            )
        if state.schema.limitations:
            logger.info(
                "some tool arguments are offered to policies as JSON text",
                extra={"schema_limitations": list(state.schema.limitations)},
            )

    def try_load(self, catalog: Catalog) -> bool:
        """`load` for the running gateway: never raises; returns whether a new set is active.

        A failure is logged once: the same error for the same files (the catalog changed, the
        policies did not) is not repeated, while every edit that fails is reported.
        """
        try:
            self.load(catalog)
        except PolicyLoadError as exc:
            failure = (self._fingerprint, str(exc))
            if failure != self._logged_failure:
                self._logged_failure = failure
                logger.error(
                    "access policies not loaded (%s): %s",
                    "the previous set stays active" if self.current else "every request is denied",
                    exc,
                )
            return False
        return True

    def catalog_changed(self, catalog: Catalog) -> None:
        """Re-validate the current files against a changed catalog; never raises (see `status`)."""
        self.try_load(catalog)

    def reload_if_changed(self, catalog: Catalog) -> bool:
        """Reload when a policy file was added, removed or changed; returns whether a new set is active."""
        if self._current_fingerprint() == self._fingerprint:
            return False
        return self.try_load(catalog)

    @property
    def loaded(self) -> bool:
        """Whether a valid set is active; cheap enough to ask on every request."""
        return self.current is not None

    @property
    def status(self) -> PolicyStatus:
        state = self.current
        schema = self._last_schema
        return PolicyStatus(
            loaded=state is not None,
            policy_count=len(state.loaded) if state else 0,
            loaded_at=state.loaded_at if state else None,
            last_error=self._last_error,
            limitations=schema.limitations if schema else (),
            waiting=tuple(policy.describe() for policy in state.waiting) if state else (),
        )

    def policies(self) -> tuple[PolicyRef, ...]:
        """The active policies, in file order (empty when none are loaded)."""
        state = self.current
        return tuple(state.loaded.refs.values()) if state else ()

    def schema_json(self) -> dict[str, Any]:
        """The Cedar schema (JSON format) of the last catalog seen, for people writing policies."""
        schema = self._last_schema
        if schema is None:
            return {}
        document: dict[str, Any] = json.loads(json.dumps(schema.document))
        return document

    def _current_fingerprint(self) -> object:
        """Names, sizes, modification times and inodes of the policy files: cheap to take every second."""
        try:
            with os.scandir(self._access_dir) as entries:
                return tuple(
                    sorted(
                        (entry.name, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino)
                        for entry in entries
                        if entry.name.endswith(".cedar") and (stat := entry.stat())
                    )
                )
        except OSError as exc:
            return ("unreadable", type(exc).__name__)

    def _build(self, catalog: Catalog) -> PolicyState:
        files = read_policy_files(self._access_dir)
        # Taken before the schema: a connector listing meanwhile is then in the schema and still counted
        # as unlisted (its resources wait for the next load), never the other way round.
        unlisted = Unlisted.of(catalog)
        try:
            schema = generate_schema(catalog)
        except _GENERATOR_FAILURES as exc:
            raise PolicyLoadError(f"the catalog could not be turned into a Cedar schema: {exc!r}") from None
        self._last_schema = schema
        try:
            # orjson: the standard encoder holds the GIL for seconds on a schema of thousands of tools.
            schema_handle = cedarpy.Schema.from_json_str(orjson.dumps(schema.document).decode(), release_gil=True)
        except ValueError as exc:
            raise PolicyLoadError(f"Cedar refused the schema generated from the catalog: {exc}") from None
        parsed = parse_policies(files)
        problems = sort_problems(parsed, validation_errors(parsed, schema_handle), schema, unlisted)
        if problems.errors:
            raise PolicyLoadError("\n".join(problems.errors))
        loaded = parsed.without(frozenset(policy.id for policy in problems.waiting))
        try:
            policy_set(loaded.policies)
            previous = self.current
            carry_over = previous.entities.recent_principals() if previous is not None else ()
            entities = EntityStore(schema, schema_handle, carry_over)
        except ValueError as exc:
            raise PolicyLoadError(f"the policies or the catalog's entities were refused by Cedar: {exc}") from None
        return PolicyState(
            loaded=loaded,
            schema=schema,
            schema_handle=schema_handle,
            entities=entities,
            slices=PolicySlices(loaded.policies, schema.action_groups),
            loaded_at=datetime.now(UTC),
            waiting=problems.waiting,
            unlisted=frozenset(unlisted.connectors),
        )
