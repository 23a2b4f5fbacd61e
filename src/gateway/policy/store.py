"""The policy files, loaded against the live catalog: parsed once per load, swapped whole.

`load` reads `<policy_dir>/access/*.cedar` and the optional `<policy_dir>/approval/*.cedar`
(which allowed calls wait for people to approve), generates the Cedar schema from the live
catalog, validates every policy of both sets against it and builds the parsed policy sets,
schema and entities. Any failure of either set keeps the whole state that was working before
(none at first start: everything is denied) and is reported with file and line. A policy that
names the actions of a connector that has never listed waits, left out, when leaving it out
cannot allow anything (see `waiting.py`); it is loaded at the first load after that connector
lists. An approval permit waits on the terms an access forbid does (see `sort_problems`):
leaving it out must not let a listed tool run unheld. Approval policies' annotations are checked
at load too (see `approvals.py`).

What a load produces is one `PolicyState`, published as `current` in a single assignment: a
decision reads it once and decides on it whole, without a lock, however long a reload takes.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cedarpy
import orjson

from gateway.catalog import Catalog
from gateway.errors import PolicyLoadError
from gateway.policy.approvals import approval_rules
from gateway.policy.decision import PolicyRef
from gateway.policy.entities import EntityStore
from gateway.policy.hold import Requirement
from gateway.policy.joint import JointSlices
from gateway.policy.loader import LoadedPolicies, parse_policies, policy_set, read_policy_files, validation_errors
from gateway.policy.schema import GeneratedSchema, generate_schema
from gateway.policy.slices import PolicySlices, context_keys
from gateway.policy.waiting import Unlisted, WaitingPolicy, sort_problems
from gateway.policy.workflow_reads import NO_WORKFLOW_READS, WorkflowReads, workflow_reads

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
    #: Approval policies loaded (`<policies>/approval/`): which allowed calls wait for people.
    approval_count: int = 0


@dataclass(frozen=True)
class ApprovalSet:
    """The approval policies of one load: present only when there is at least one."""

    loaded: LoadedPolicies
    slices: PolicySlices
    #: What each approval permit asks for, by policy id (forbids exempt and ask nothing).
    requirements: Mapping[str, Requirement]


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
    #: The approval policies, None when none are loaded (so deciding a hold costs nothing then).
    approval: ApprovalSet | None = None
    #: Both sets as one, for a call both can apply to (see `joint.py`); None without approval policies.
    joint: JointSlices | None = None
    #: Which policies (of both sets) read a workflow's state, and which tools they name (`workflow_reads.py`).
    workflow_reads: WorkflowReads = NO_WORKFLOW_READS
    #: Per action: whether an applicable policy reads the workflow's state (filled on first use).
    workflow_actions: dict[str, bool] = field(default_factory=dict)
    #: The top-level context attributes some policy of either set reads; None: one reads `context` whole.
    context_read: frozenset[str] | None = None

    def reads_context(self, attribute: str) -> bool:
        """Whether some loaded policy may read `context.<attribute>` (so it must be kept current)."""
        return self.context_read is None or attribute in self.context_read

    def reads_workflow_state(self, action: str) -> bool:
        """Whether some policy whose action scope can match `action` reads `context.workflow.completed`/`.agents`."""
        known = self.workflow_actions.get(action)
        if known is None:
            readers = self.workflow_reads.readers
            known = bool(readers) and (
                any(policy_id in readers for policy_id in self.slices.matching(action))
                or (
                    self.approval is not None
                    and any(policy_id in readers for policy_id in self.approval.slices.matching(action))
                )
            )
            self.workflow_actions[action] = known
        return known


class PolicyStore:
    """Loads the policy files and holds the set in force (`current`); see the module docstring."""

    def __init__(self, policy_dir: Path) -> None:
        self._access_dir = Path(policy_dir) / "access"
        self._approval_dir = Path(policy_dir) / "approval"
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
        approval = state.approval.loaded if state.approval is not None else None
        logger.info(
            "access policies loaded",
            extra={
                "policies": len(state.loaded),
                "files": [str(f.path) for f in state.loaded.files],
                "approval_policies": len(approval) if approval is not None else 0,
                "approval_files": [str(f.path) for f in approval.files] if approval is not None else [],
            },
        )
        if state.waiting:
            connectors = ", ".join(dict.fromkeys(name for policy in state.waiting for name in policy.connectors))
            # Info, not a warning: every start loads the policies before its backends list (they
            # start in the background). A backend that does not come is warned about as such, and
            # `/readyz` names the policies still waiting.
            logger.info(
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
            approval_count=len(state.approval.loaded) if state and state.approval else 0,
        )

    def policies(self) -> tuple[PolicyRef, ...]:
        """The active policies, in file order (empty when none are loaded)."""
        state = self.current
        return tuple(state.loaded.refs.values()) if state else ()

    def approval_policies(self) -> tuple[PolicyRef, ...]:
        """The active approval policies, in file order (empty when none are loaded)."""
        state = self.current
        return tuple(state.approval.loaded.refs.values()) if state and state.approval else ()

    def schema_json(self) -> dict[str, Any]:
        """The Cedar schema (JSON format) of the last catalog seen, for people writing policies."""
        schema = self._last_schema
        if schema is None:
            return {}
        document: dict[str, Any] = json.loads(json.dumps(schema.document))
        return document

    def _current_fingerprint(self) -> object:
        """Names, sizes, modification times and inodes of the policy files: cheap to take every second."""
        return (_fingerprint(self._access_dir), _fingerprint(self._approval_dir))

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
        approval, approval_waiting = self._build_approval(parsed, schema, schema_handle, unlisted)
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
            waiting=(*problems.waiting, *approval_waiting),
            unlisted=frozenset(unlisted.connectors),
            approval=approval,
            joint=JointSlices(loaded.policies, approval.loaded.policies) if approval is not None else None,
            workflow_reads=workflow_reads(loaded.policies).merged(
                workflow_reads(approval.loaded.policies) if approval is not None else NO_WORKFLOW_READS
            ),
            context_read=context_keys(
                [*loaded.policies.values(), *(approval.loaded.policies.values() if approval is not None else ())]
            ),
        )

    def _build_approval(
        self, access: LoadedPolicies, schema: GeneratedSchema, schema_handle: cedarpy.Schema, unlisted: Unlisted
    ) -> tuple[ApprovalSet | None, tuple[WaitingPolicy, ...]]:
        """The approval policies, validated like the access policies; their ids must differ from those."""
        files = read_policy_files(self._approval_dir, optional=True)
        if not files:
            return None, ()
        parsed = parse_policies(files, id_prefix="approval/")
        for policy_id, ref in parsed.refs.items():
            other = access.refs.get(policy_id)
            if other is not None:
                raise PolicyLoadError(
                    f"{ref.file}:{ref.line}: policy id '{policy_id}' is already used by the policy at "
                    f"{other.file}:{other.line}; every policy needs its own @id"
                )
        problems = sort_problems(
            parsed, validation_errors(parsed, schema_handle), schema, unlisted, restrictive="permit"
        )
        rules = approval_rules(parsed)
        if problems.errors or rules.errors:
            raise PolicyLoadError("\n".join((*problems.errors, *rules.errors)))
        loaded = parsed.without(frozenset(policy.id for policy in problems.waiting))
        if not loaded.policies:
            return None, problems.waiting
        try:
            policy_set(loaded.policies)
        except ValueError as exc:
            raise PolicyLoadError(f"the approval policies were refused by Cedar: {exc}") from None
        return ApprovalSet(loaded, PolicySlices(loaded.policies, schema.action_groups), rules.requirements), (
            problems.waiting
        )


def _fingerprint(directory: Path) -> object:
    try:
        with os.scandir(directory) as entries:
            return tuple(
                sorted(
                    (entry.name, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino)
                    for entry in entries
                    if entry.name.endswith(".cedar") and (stat := entry.stat())
                )
            )
    except FileNotFoundError:
        return "absent"
    except OSError as exc:
        return ("unreadable", type(exc).__name__)
