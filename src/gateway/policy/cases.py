"""Policy test cases: requests with the decision a security team expects, run without backends.

A case expects `allow` (the access policies allow the call and no approval policy holds it),
`deny`, or `hold` (allowed, but people must approve it first; `approvers` and `quorum` then
check the combined requirement).

A cases directory (`policies/tests/`) holds `catalog.json`, the tool definitions the cases need
(what the backends would list), and any number of `*.toml` files of cases; the format is
described in `policies/README.md`. `gateway policy test` and CI run them with `run_policy_tests`.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from gateway.calls import THIS_CALL_ONLY, Call, Origin, RateCounts, WorkflowState
from gateway.catalog import Catalog
from gateway.catalog.builtin import GATEWAY_TOOLS_LISTING, GATEWAY_TOOLS_SETTINGS
from gateway.connectors.base import Listing
from gateway.errors import ConfigError, UnknownTool
from gateway.identity.principal import Principal
from gateway.policy.decision import Decision
from gateway.policy.engine import PolicyEngine
from gateway.policy.hold import HoldDecision
from gateway.settings.connectors import GATEWAY_TOOLS_CONNECTOR, McpStdioConnector, ToolOverride

CATALOG_FILE = "catalog.json"
_CASE_KEYS = frozenset(
    {
        "name",
        "agent",
        "roles",
        "scopes",
        "user",
        "tool",
        "arguments",
        "expect",
        "policy",
        "visible",
        "reasoning",
        "workflow",
        "completed",
        "workflow_agents",
        "time",
        "approvers",
        "quorum",
        "rate",
    }
)
_RATE_KEYS = ("minute", "hour", "tool_minute", "tool_hour")
_EXPECTATIONS = ("allow", "deny", "hold")


@dataclass(frozen=True, slots=True)
class CaseResult:
    """One case's outcome: what was expected, what the engine decided, and what did not match."""

    file: Path
    name: str
    expected: str
    decision: Decision | None
    problems: tuple[str, ...] = ()
    #: Whether the approval policies hold the call: set for every call the access policies allowed.
    hold: HoldDecision | None = None

    @property
    def decided(self) -> str:
        """allow, deny or hold: what the gateway would do with the call."""
        if self.decision is None:
            return "-"
        if self.hold is not None and self.hold.held:
            return "hold"
        return self.decision.effect.value

    @property
    def policy_ids(self) -> tuple[str, ...]:
        """The access policies that decided, then the approval policies that held or exempted."""
        ids = self.decision.policy_ids if self.decision is not None else ()
        return ids + (self.hold.policy_ids if self.hold is not None else ())

    @property
    def passed(self) -> bool:
        return not self.problems

    def describe(self) -> str:
        status = "ok  " if self.passed else "FAIL"
        lines = [f"{status} {self.file.name}: {self.name} (expected {self.expected})"]
        lines.extend(f"     {problem}" for problem in self.problems)
        if not self.passed and self.decision is not None:
            lines.extend(f"     {line}" for line in self.decision.explain().splitlines())
            if self.hold is not None:
                lines.extend(f"     {line}" for line in self.hold.explain().splitlines())
        return "\n".join(lines)


def catalog_from_definitions(path: Path) -> Catalog:
    """A `Catalog` built from a definitions file instead of live backends.

    Format: `{"separator": "__", "connectors": {"crm": {"labels": [...], "overrides": {"<tool>":
    {"labels": [...], "enabled": true}}, "tools": [...], "prompts": [...], "resources": [...],
    "resourceTemplates": [...]}}}`, where tools, prompts, resources and templates are the wire
    dicts a backend lists (name, annotations, inputSchema, ...).
    """
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from None
    connectors = document.get("connectors") if isinstance(document, Mapping) else None
    if not isinstance(connectors, Mapping):
        raise ConfigError(f"{path}: expected an object with a 'connectors' object")
    settings = []
    listings = {}
    for name, spec in connectors.items():
        if not isinstance(spec, Mapping):
            raise ConfigError(f"{path}: connectors.{name}: expected an object")
        try:
            overrides = {tool: ToolOverride(**override) for tool, override in (spec.get("overrides") or {}).items()}
            settings.append(
                McpStdioConnector(
                    name=name,
                    kind="mcp-stdio",
                    command=("policy-test",),
                    labels=tuple(spec.get("labels") or ()),
                    tools=overrides,
                )
            )
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{path}: connectors.{name}: {exc}") from None
        listings[name] = Listing(
            tools=tuple(spec.get("tools") or ()),
            prompts=tuple(spec.get("prompts") or ()),
            resources=tuple(spec.get("resources") or ()),
            resource_templates=tuple(spec.get("resourceTemplates") or ()),
        )
    # The gateway's own tools are in every live catalog, so policies may name them here too.
    catalog = Catalog((*settings, GATEWAY_TOOLS_SETTINGS), separator=str(document.get("separator", "__")))
    listings[GATEWAY_TOOLS_CONNECTOR] = GATEWAY_TOOLS_LISTING
    for name, listing in listings.items():
        try:
            catalog.update(name, listing)
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"{path}: connectors.{name}: a definition lacks a required key: {exc}") from None
    return catalog


def run_cases(engine: PolicyEngine, catalog: Catalog, cases_dir: Path) -> list[CaseResult]:
    """Run every case of every `*.toml` in `cases_dir` against `engine`, loaded with `catalog`."""
    results: list[CaseResult] = []
    for file in sorted(Path(cases_dir).glob("*.toml")):
        for index, case in enumerate(_read_cases(file), start=1):
            results.append(_run_case(engine, catalog, file, index, case))
    return results


def run_policy_tests(policy_dir: Path) -> list[CaseResult]:
    """Load `<policy_dir>/access` and `approval` against `<policy_dir>/tests/catalog.json`; run the cases there.

    Raises PolicyLoadError when the policies do not load, ConfigError when a test file is invalid.
    """
    cases_dir = Path(policy_dir) / "tests"
    catalog = catalog_from_definitions(cases_dir / CATALOG_FILE)
    engine = PolicyEngine(Path(policy_dir))
    engine.store.load(catalog)
    return run_cases(engine, catalog, cases_dir)


def _read_cases(file: Path) -> list[Mapping[str, Any]]:
    try:
        document = tomllib.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: invalid TOML: {exc}") from None
    cases = document.get("case", [])
    if not isinstance(cases, list):
        raise ConfigError(f"{file}: 'case' must be an array of tables ([[case]])")
    for index, case in enumerate(cases, start=1):
        unknown = set(case) - _CASE_KEYS
        if unknown:
            raise ConfigError(f"{file}: case {index}: unknown key(s) {', '.join(sorted(unknown))}")
        for key in ("agent", "tool", "expect"):
            if key not in case:
                raise ConfigError(f"{file}: case {index} ({case.get('name', 'unnamed')}): key '{key}' is missing")
        if case["expect"] not in _EXPECTATIONS:
            raise ConfigError(f'{file}: case {index}: expect must be "allow", "deny" or "hold"')
        if ("approvers" in case or "quorum" in case) and case["expect"] != "hold":
            raise ConfigError(f'{file}: case {index}: approvers and quorum go with expect = "hold"')
        approvers = case.get("approvers", [])
        if not isinstance(approvers, list) or not all(isinstance(a, str) for a in approvers):
            raise ConfigError(f"{file}: case {index}: approvers must be a list of strings")
        for key in ("completed", "workflow_agents"):
            names = case.get(key, [])
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise ConfigError(f"{file}: case {index}: {key} must be a list of strings")
        if "quorum" in case and (not isinstance(case["quorum"], int) or isinstance(case["quorum"], bool)):
            raise ConfigError(f"{file}: case {index}: quorum must be an integer")
        if "rate" in case:
            try:
                rate_counts(case["rate"])
            except ValueError as exc:
                raise ConfigError(f"{file}: case {index}: rate: {exc}") from None
    return cases


def _run_case(engine: PolicyEngine, catalog: Catalog, file: Path, index: int, case: Mapping[str, Any]) -> CaseResult:
    name = str(case.get("name") or f"case {index}")
    expected = case["expect"]
    principal = Principal(
        agent=case["agent"],
        roles=tuple(case.get("roles", ())),
        scopes=tuple(case.get("scopes", ())),
        user=case.get("user"),
    )
    try:
        tool = catalog.resolve_tool(case["tool"])
    except UnknownTool:
        return CaseResult(file, name, expected, None, (f"tool '{case['tool']}' is not in {CATALOG_FILE}",))
    when = case.get("time")
    now = datetime.fromisoformat(when) if isinstance(when, str) else when
    origin = Origin(
        principal, request_id=f"{file.stem}:{index}", session_id="policy-test", client_name="gateway policy test"
    )
    call = Call(
        "tools/call",
        origin,
        tool.exposed,
        case.get("arguments", {}),
        reasoning=case.get("reasoning"),
        workflow=case.get("workflow"),
        workflow_state=WorkflowState(
            completed=frozenset(case.get("completed", ())), agents=frozenset(case.get("workflow_agents", ()))
        ),
        rate=rate_counts(case.get("rate", {})),
    )
    decision = engine.decisions.decide_call(call, tool, now=now)
    hold = engine.decisions.decide_hold(call, tool, now=now, decision=decision) if decision.allowed else None
    result = CaseResult(file, name, expected, decision, hold=hold)
    problems = []
    if result.decided != expected:
        if result.decided == "hold" and hold is not None:
            problems.append(f"held: {hold.explain().splitlines()[0].removeprefix('held: ')}")
        else:
            problems.append(f"decided {decision.effect.value}: {decision.reason}")
    if case.get("policy") and case["policy"] not in result.policy_ids:
        shown = ", ".join(result.policy_ids) or "no policy"
        problems.append(f"expected policy '{case['policy']}' to determine the decision, but it was {shown}")
    requirement = hold.requirement if hold is not None and hold.held else None
    expected_approvers = sorted(set(case.get("approvers", ())))
    if requirement is not None and "approvers" in case and expected_approvers != list(requirement.approvers):
        problems.append(
            f"expected approvers {', '.join(expected_approvers)}, but the hold needs {', '.join(requirement.approvers)}"
        )
    if requirement is not None and "quorum" in case and case["quorum"] != requirement.quorum:
        problems.append(f"expected quorum {case['quorum']}, but the hold needs {requirement.quorum}")
    if "visible" in case:
        visible = bool(engine.decisions.visible_tools(origin, [tool], now=now))
        if visible != bool(case["visible"]):
            problems.append(f"expected the tool to be {'visible' if case['visible'] else 'hidden'} in tools/list")
    return CaseResult(file, name, expected, decision, tuple(problems), hold)


def rate_counts(given: Any) -> RateCounts:
    """`context.rate` from the counts a case or `gateway policy explain --rate` states; raises ValueError.

    Counts not given are the smallest the given ones allow (at least 1, the call itself): with only
    `tool_minute = 6`, `minute` and `tool_hour` are 6 too and `hour` is 6, as they would be for a
    quiet agent that made six calls of this tool in the last minute.
    """
    if not isinstance(given, Mapping):
        raise ValueError(f"expected a table of counts ({', '.join(_RATE_KEYS)})")
    unknown = set(given) - set(_RATE_KEYS)
    if unknown:
        raise ValueError(f"unknown count(s) {', '.join(sorted(map(str, unknown)))}; use {', '.join(_RATE_KEYS)}")
    for name, value in given.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a whole number of calls, at least 1 (the call itself), got {value!r}")
    tool_minute = given.get("tool_minute", THIS_CALL_ONLY.tool_minute)
    minute = given.get("minute", tool_minute)
    tool_hour = given.get("tool_hour", tool_minute)
    hour = given.get("hour", max(minute, tool_hour))
    counts = RateCounts(minute=minute, hour=hour, tool_minute=tool_minute, tool_hour=tool_hour)
    for smaller, larger in (
        ("tool_minute", "minute"),
        ("tool_minute", "tool_hour"),
        ("minute", "hour"),
        ("tool_hour", "hour"),
    ):
        if getattr(counts, smaller) > getattr(counts, larger):
            raise ValueError(
                f"{smaller} ({getattr(counts, smaller)}) cannot exceed {larger} ({getattr(counts, larger)}): "
                "the calls it counts are among those"
            )
    return counts
