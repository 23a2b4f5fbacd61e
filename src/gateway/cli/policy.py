"""`gateway policy validate|schema|test|explain`: the Cedar access policies, checked before they serve.

`validate`, `schema` and `explain` need the tools the policies are written against: from the
live backends by default, or from a definitions file (`--catalog`), so CI can check policies
without starting any backend. `test` runs the cases next to the policies, which carry their own
catalog.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from gateway.cli.config_option import add_config_argument, load
from gateway.cli.output import print_catalog_problems, print_table
from gateway.errors import GatewayError

if TYPE_CHECKING:
    from gateway.catalog import Catalog
    from gateway.policy import PolicyEngine


def build(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(title="policy", metavar="ACTION")

    validate = actions.add_parser("validate", help="load the policies against the live catalog and report errors")
    add_config_argument(validate)
    _add_catalog_argument(validate)
    validate.set_defaults(run=_validate)

    schema = actions.add_parser("schema", help="write the Cedar schema generated from the live catalog")
    add_config_argument(schema)
    _add_catalog_argument(schema)
    schema.add_argument("--output", "-o", help="file to write (default: stdout)")
    schema.set_defaults(run=_schema)

    test = actions.add_parser("test", help="run the cases in <policies>/tests and print a table")
    add_config_argument(test)
    test.add_argument("--dir", help="policies directory (default: [policies] dir of the config)")
    test.set_defaults(run=_test)

    explain = actions.add_parser("explain", help="show the decision for one request and the policies behind it")
    add_config_argument(explain)
    _add_catalog_argument(explain)
    explain.add_argument("--agent", required=True)
    explain.add_argument("--role", action="append", default=[], help="role of the agent (repeatable)")
    explain.add_argument("--scope", action="append", default=[], help="OAuth scope of the agent's token (repeatable)")
    explain.add_argument("--user", help="the user the agent acts for")
    explain.add_argument("--tool", required=True, help="exposed tool name, e.g. crm__update_record")
    explain.add_argument("--args", default="{}", help="arguments as a JSON object")
    explain.add_argument("--reasoning", help="the agent's stated reasoning")
    explain.add_argument(
        "--rate",
        action="append",
        default=[],
        metavar="NAME=COUNT",
        help="the agent's recent calls as context.rate sees them, e.g. tool_minute=6 (repeatable; "
        "names: minute, hour, tool_minute, tool_hour; unset ones are the smallest the set ones allow)",
    )
    explain.add_argument("--workflow", help="the workflow the call belongs to (context.workflow.id)")
    explain.add_argument(
        "--completed",
        action="append",
        default=[],
        metavar="TOOL",
        help="a tool that already succeeded in the workflow, as context.workflow.completed sees it (repeatable)",
    )
    explain.add_argument(
        "--workflow-agent",
        action="append",
        default=[],
        metavar="AGENT",
        help="an agent that already made calls in the workflow (context.workflow.agents; repeatable)",
    )
    explain.set_defaults(run=_explain)


def _add_catalog_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--catalog",
        help="tool definitions file (like policies/tests/catalog.json) instead of connecting to the backends",
    )


def _with_policy_catalog(args: argparse.Namespace, action: Callable[[PolicyEngine, Catalog], int]) -> int:
    """Run `action(engine, catalog)` with the catalog from `--catalog`, or from the live backends."""
    from gateway.policy import PolicyEngine
    from gateway.policy.cases import catalog_from_definitions
    from gateway.runtime import GatewayRuntime

    if args.catalog:
        config = load(args, with_connectors=False)
        return action(PolicyEngine(config.gateway.policies.dir), catalog_from_definitions(Path(args.catalog)))
    config = load(args)
    runtime = GatewayRuntime(config)

    async def live() -> int | GatewayError:
        # Raised inside the backends' task group, an error would come out wrapped in an ExceptionGroup
        # (a traceback instead of the one-line reason `main` prints): carry it out of the group first.
        async with runtime.connected():
            try:
                return action(runtime.policy, runtime.catalog)
            except GatewayError as exc:
                return exc

    outcome = anyio.run(live)
    if isinstance(outcome, GatewayError):
        raise outcome
    return outcome


def _validate(args: argparse.Namespace) -> int:
    from gateway.errors import PolicyLoadError

    def validate(engine: PolicyEngine, catalog: Catalog) -> int:
        # Agents not being offered what the connector files say fails validation too; named first,
        # so a policy error below does not hide it.
        problems = print_catalog_problems(catalog)
        try:
            engine.store.load(catalog)
        except PolicyLoadError as exc:
            errors = str(exc).splitlines()
            for error in errors:
                print(error, file=sys.stderr)
            print(
                f"gateway: {len(errors)} {'problem' if len(errors) == 1 else 'problems'} in the access policies; "
                "fix them and validate again (a running gateway keeps its previous set until then)",
                file=sys.stderr,
            )
            return 1
        status = engine.store.status
        print(f"{status.policy_count} access policies are valid against {len(list(catalog.tools()))} tools")
        if status.approval_count:
            print(f"{status.approval_count} approval policies are valid too")
        if status.waiting:
            count = len(status.waiting)
            waits = "policy waits" if count == 1 else "policies wait"
            print(f"{count} more {waits}, not loaded, until connectors list:")
        for waiting in status.waiting:
            print(f"waiting: {waiting}")
        for limitation in status.limitations:
            print(f"note: {limitation}")
        return 1 if problems else 0

    return _with_policy_catalog(args, validate)


def _schema(args: argparse.Namespace) -> int:
    def schema(engine: PolicyEngine, catalog: Catalog) -> int:
        try:
            engine.store.load(catalog)
        except GatewayError as exc:  # the schema is still worth having when a policy is wrong
            print(f"gateway: warning: {exc}", file=sys.stderr)
        text = json.dumps(engine.store.schema_json(), indent=2, sort_keys=True)
        if args.output:
            Path(args.output).write_text(text + "\n")
            print(f"wrote {args.output}", file=sys.stderr)
        else:
            print(text)
        return 0

    return _with_policy_catalog(args, schema)


def _test(args: argparse.Namespace) -> int:
    from gateway.policy.cases import run_policy_tests

    directory = Path(args.dir) if args.dir else load(args, with_connectors=False).gateway.policies.dir
    results = run_policy_tests(directory)
    rows = [
        (
            "ok" if r.passed else "FAIL",
            r.file.name,
            r.name,
            r.expected,
            r.decided,
            ",".join(r.policy_ids) if r.decision else "-",
        )
        for r in results
    ]
    print_table(("RESULT", "FILE", "CASE", "EXPECTED", "DECIDED", "POLICIES"), rows)
    failed = [r for r in results if not r.passed]
    for result in failed:
        print(f"\nFAIL {result.file.name}: {result.name}\n  " + "\n  ".join(result.problems))
    print(f"\n{len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed or not results else 0


def _explain(args: argparse.Namespace) -> int:
    from gateway.calls import WorkflowState
    from gateway.identity.principal import Principal
    from gateway.policy.cases import rate_counts
    from gateway.policy.explain import explain_call

    try:
        arguments = json.loads(args.args)
    except json.JSONDecodeError as exc:
        print(f"gateway: --args is not JSON: {exc}", file=sys.stderr)
        return 2
    try:
        rate = rate_counts(dict(_rate_argument(item) for item in args.rate)) if args.rate else None
    except ValueError as exc:
        print(f"gateway: --rate: {exc}", file=sys.stderr)
        return 2
    principal = Principal(
        agent=args.agent, roles=tuple(args.role), scopes=tuple(args.scope), user=args.user, auth_method="explain"
    )

    def explain(engine: PolicyEngine, catalog: Catalog) -> int:
        engine.store.load(catalog)
        explanation = explain_call(
            engine,
            catalog.resolve_tool(args.tool),
            principal,
            arguments,
            reasoning=args.reasoning,
            rate=rate,
            workflow=args.workflow,
            workflow_state=WorkflowState(completed=frozenset(args.completed), agents=frozenset(args.workflow_agent)),
        )
        print(explanation.text())
        return 0 if explanation.decision.allowed else 3

    return _with_policy_catalog(args, explain)


def _rate_argument(item: str) -> tuple[str, int]:
    """One `--rate NAME=COUNT`; raises ValueError saying what was expected."""
    name, separator, count = item.partition("=")
    if not separator or not count.strip().isdigit():
        raise ValueError(f"expected NAME=COUNT such as tool_minute=6, got {item!r}")
    return name.strip(), int(count)
