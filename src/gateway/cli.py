"""`gateway` command: serve, stdio, migrate, keys, tools.

Each subcommand loads the config once, does one job, and exits non-zero with a one-line
reason on failure; tables go to stdout, diagnostics to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

import anyio

from gateway import __version__
from gateway.config import Config, load_config
from gateway.errors import GatewayError
from gateway.logs import configure_logging

_DEFAULT_CONFIG = "gateway.toml"


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    try:
        return int(args.run(args) or 0)
    except GatewayError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except (BrokenPipeError, BaseExceptionGroup) as exc:
        if not _only_broken_pipes(exc):
            raise
        return _stdout_closed()


def _only_broken_pipes(error: BaseException) -> bool:
    if isinstance(error, BaseExceptionGroup):
        return all(_only_broken_pipes(inner) for inner in error.exceptions)
    return isinstance(error, BrokenPipeError)


def _stdout_closed() -> int:
    """The reader of our output went away (`gateway audit search | head`): stop quietly.

    What is still buffered for stdout goes to /dev/null, so the interpreter's flush at exit does
    not fail a second time; the status is the one a command killed by SIGPIPE has, which is what
    a pipeline expects of a writer cut short.
    """
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    return 128 + signal.SIGPIPE


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gateway", description="Autonomy Gateway: one governed MCP endpoint in front of many backends."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the gateway over streamable HTTP")
    _config_argument(serve)
    serve.add_argument("--host", help="address to bind (overrides [server].host)")
    serve.add_argument("--port", type=int, help="port to bind (overrides [server].port)")
    serve.add_argument(
        "--workers",
        type=int,
        help="processes serving the port (overrides [server].workers; more than 1 needs PostgreSQL)",
    )
    serve.add_argument("--worker-index", type=int, help=argparse.SUPPRESS)  # set by the supervisor for its workers
    serve.set_defaults(run=_serve)

    stdio = commands.add_parser("stdio", help="speak MCP on stdin/stdout for a local client")
    _config_argument(stdio)
    stdio.add_argument("--key", default=os.environ.get("GATEWAY_KEY"), help="API key (default: $GATEWAY_KEY)")
    stdio.set_defaults(run=_stdio)

    migrate = commands.add_parser("migrate", help="create or upgrade the database schema")
    _config_argument(migrate)
    migrate.set_defaults(run=_migrate)

    keys = commands.add_parser("keys", help="manage agents' API keys").add_subparsers(title="keys", metavar="ACTION")
    create = keys.add_parser("create", help="create a key for an agent; the key is printed once")
    _config_argument(create)
    create.add_argument("--agent", required=True, help="agent identity the key authenticates as")
    create.add_argument("--role", action="append", default=[], help="role of the agent (repeatable)")
    create.add_argument("--description", help="free text, e.g. where the key is deployed")
    create.add_argument("--json", action="store_true", help="print JSON instead of text")
    create.set_defaults(run=_keys_create)
    listing = keys.add_parser("list", help="list keys (never the secrets)")
    _config_argument(listing)
    listing.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    listing.set_defaults(run=_keys_list)
    revoke = keys.add_parser("revoke", help="revoke a key by its id")
    _config_argument(revoke)
    revoke.add_argument("key_id", help="the key's id, as shown by 'gateway keys list'")
    revoke.set_defaults(run=_keys_revoke)

    config = commands.add_parser("config", help="describe the configuration files").add_subparsers(
        title="config", metavar="ACTION"
    )
    reference = config.add_parser(
        "reference", help="print every gateway.toml and connector key with its type, default and meaning (Markdown)"
    )
    reference.add_argument("--output", "-o", help="file to write (default: stdout)")
    reference.set_defaults(run=_config_reference)

    _policy_commands(commands)
    _audit_commands(commands)

    tools = commands.add_parser("tools", help="inspect the aggregated catalog").add_subparsers(
        title="tools", metavar="ACTION"
    )
    tools_list = tools.add_parser("list", help="connect to every backend and show the exposed tools")
    _config_argument(tools_list)
    tools_list.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    tools_list.set_defaults(run=_tools_list)
    return parser


def _config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        default=os.environ.get("GATEWAY_CONFIG"),
        help=f"path to gateway.toml (default: $GATEWAY_CONFIG, else ./{_DEFAULT_CONFIG} if present)",
    )


def _load(args: argparse.Namespace, *, with_connectors: bool = True) -> Config:
    path = args.config
    if path is None and Path(_DEFAULT_CONFIG).is_file():
        path = _DEFAULT_CONFIG
    config = load_config(path, with_connectors=with_connectors)
    configure_logging(config.gateway.logging.level, config.gateway.logging.format)
    from gateway.telemetry import install_log_correlation

    install_log_correlation()
    return config


def _run(coroutine_function: Callable[[], Coroutine[Any, Any, int | None]]) -> int:
    return int(anyio.run(coroutine_function) or 0)


# -- serve / stdio ---------------------------------------------------------------------------


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from gateway import workers
    from gateway.app import create_app
    from gateway.front.header_limit import protocol_class

    config = _load(args)
    server = config.gateway.server
    host = args.host or server.host
    port = args.port if args.port is not None else server.port
    if args.worker_index is not None:
        return workers.run_worker(config, host=host, port=port, index=args.worker_index)
    count = args.workers if args.workers is not None else server.workers
    if count < 1:
        print("gateway: --workers must be at least 1", file=sys.stderr)
        return 2
    if count > 1:
        path = args.config or (_DEFAULT_CONFIG if Path(_DEFAULT_CONFIG).is_file() else None)
        arguments = ["--config", str(Path(path).resolve())] if path else []
        return workers.supervise(config, host=host, port=port, workers=count, worker_arguments=arguments)
    uvicorn.run(
        create_app(config),
        host=host,
        port=port,
        http=protocol_class(server.http_parser, server.max_header_bytes),
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
    )
    return 0


def _stdio(args: argparse.Namespace) -> int:
    from mcp.server.stdio import stdio_server

    from gateway.front.server import build_server
    from gateway.runtime import GatewayRuntime

    if not args.key:
        print("gateway: stdio needs an API key: pass --key or set GATEWAY_KEY", file=sys.stderr)
        return 2
    config = _load(args)
    runtime = GatewayRuntime(config)

    async def serve() -> None:
        # Refuse a bad key before any backend is started.
        await runtime.database.migrate()
        try:
            principal = await runtime.authenticator.authenticate(args.key)
        except GatewayError:
            await runtime.database.close()
            raise
        async with runtime.running(migrate=False):
            server = build_server(runtime.pipeline, runtime.notifier, default_principal=principal)
            async with stdio_server() as (read_stream, write_stream):
                await server.run(read_stream, write_stream, server.create_initialization_options())

    return _run(serve)


def _migrate(args: argparse.Namespace) -> int:
    from sqlalchemy.engine import make_url

    from gateway.storage.database import migrate_database

    config = _load(args, with_connectors=False)

    async def migrate() -> None:
        change = await migrate_database(config.gateway.storage.url)
        print(change.describe(make_url(config.gateway.storage.url).render_as_string(hide_password=True)))

    return _run(migrate)


def _config_reference(args: argparse.Namespace) -> int:
    from gateway.config_reference import write_reference

    text = write_reference(Path(args.output) if args.output else None)
    if args.output:
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


# -- keys ------------------------------------------------------------------------------------


def _with_keys(args: argparse.Namespace, action: Callable[[Any], Coroutine[Any, Any, int | None]]) -> int:
    from gateway.identity.api_keys import ApiKeyStore
    from gateway.storage.database import Database

    config = _load(args, with_connectors=False)

    async def run() -> int | None:
        database = Database(config.gateway.storage.url)
        try:
            await database.migrate()
            return await action(ApiKeyStore(database, cache_seconds=0))
        finally:
            await database.close()

    return _run(run)


def _keys_create(args: argparse.Namespace) -> int:
    async def create(store: Any) -> int:
        try:
            record, key = await store.create(args.agent, args.role, args.description)
        except ValueError as exc:
            print(f"gateway: {exc}", file=sys.stderr)
            return 2
        if args.json:
            print(json.dumps({**_record_json(record), "key": key}))
        else:
            print(f"Created key {record.id} for agent '{record.agent}' (roles: {', '.join(record.roles) or '-'}).")
            print("Store it now; it is not shown again:")
            print(key)
        return 0

    return _with_keys(args, create)


def _keys_list(args: argparse.Namespace) -> int:
    async def show(store: Any) -> int:
        records = await store.list()
        if args.json:
            for record in records:
                print(json.dumps(_record_json(record)))
            return 0
        rows = [
            (
                r.id,
                r.agent,
                ",".join(r.roles) or "-",
                r.prefix + "…",
                _when(r.created_at),
                _when(r.revoked_at) or "active",
            )
            for r in records
        ]
        _print_table(("ID", "AGENT", "ROLES", "KEY", "CREATED", "REVOKED"), rows)
        return 0

    return _with_keys(args, show)


def _keys_revoke(args: argparse.Namespace) -> int:
    async def revoke(store: Any) -> int:
        try:
            record = await store.revoke(args.key_id)
        except (KeyError, ValueError, LookupError) as exc:
            print(f"gateway: {exc.args[0] if exc.args else exc}", file=sys.stderr)
            return 1
        print(f"Revoked key {record.id} of agent '{record.agent}'.")
        return 0

    return _with_keys(args, revoke)


def _record_json(record: Any) -> dict[str, Any]:
    return {
        "id": record.id,
        "agent": record.agent,
        "roles": list(record.roles),
        "prefix": record.prefix,
        "description": record.description,
        "created_at": _when(record.created_at),
        "revoked_at": _when(record.revoked_at),
    }


def _when(value: Any) -> str | None:
    return value.isoformat(timespec="seconds") if value is not None else None


# -- audit -----------------------------------------------------------------------------------


def _audit_commands(commands: Any) -> None:
    from gateway.audit import commands as audit_commands
    from gateway.storage.database import Database

    audit_commands.register(
        commands,
        lambda args: Database(_load(args, with_connectors=False).gateway.storage.url),
        common_arguments=_config_argument,
    )


# -- policy ----------------------------------------------------------------------------------


def _policy_commands(commands: Any) -> None:
    policy = commands.add_parser("policy", help="validate, test and explain the Cedar access policies")
    actions = policy.add_subparsers(title="policy", metavar="ACTION")

    def catalog_argument(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--catalog",
            help="tool definitions file (like policies/tests/catalog.json) instead of connecting to the backends",
        )

    validate = actions.add_parser("validate", help="load the policies against the live catalog and report errors")
    _config_argument(validate)
    catalog_argument(validate)
    validate.set_defaults(run=_policy_validate)

    schema = actions.add_parser("schema", help="write the Cedar schema generated from the live catalog")
    _config_argument(schema)
    catalog_argument(schema)
    schema.add_argument("--output", "-o", help="file to write (default: stdout)")
    schema.set_defaults(run=_policy_schema)

    test = actions.add_parser("test", help="run the cases in <policies>/tests and print a table")
    _config_argument(test)
    test.add_argument("--dir", help="policies directory (default: [policies] dir of the config)")
    test.set_defaults(run=_policy_test)

    explain = actions.add_parser("explain", help="show the decision for one request and the policies behind it")
    _config_argument(explain)
    catalog_argument(explain)
    explain.add_argument("--agent", required=True)
    explain.add_argument("--role", action="append", default=[], help="role of the agent (repeatable)")
    explain.add_argument("--scope", action="append", default=[], help="OAuth scope of the agent's token (repeatable)")
    explain.add_argument("--user", help="the user the agent acts for")
    explain.add_argument("--tool", required=True, help="exposed tool name, e.g. crm__update_record")
    explain.add_argument("--args", default="{}", help="arguments as a JSON object")
    explain.add_argument("--reasoning", help="the agent's stated reasoning")
    explain.set_defaults(run=_policy_explain)


def _with_policy_catalog(args: argparse.Namespace, action: Callable[[Any, Any], int]) -> int:
    """Run `action(engine, catalog)` with the catalog from `--catalog`, or from the live backends."""
    from gateway.policy import PolicyEngine
    from gateway.policy.cases import catalog_from_definitions
    from gateway.runtime import GatewayRuntime

    if args.catalog:
        config = _load(args, with_connectors=False)
        return action(PolicyEngine(config.gateway.policies.dir), catalog_from_definitions(Path(args.catalog)))
    config = _load(args)
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


def _policy_validate(args: argparse.Namespace) -> int:
    from gateway.errors import PolicyLoadError

    def validate(engine: Any, catalog: Any) -> int:
        # Agents not being offered what the connector files say fails validation too; named first,
        # so a policy error below does not hide it.
        problems = _print_catalog_problems(catalog)
        try:
            engine.load(catalog)
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
        status = engine.status
        print(f"{status.policy_count} access policies are valid against {len(list(catalog.tools()))} tools")
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


def _policy_schema(args: argparse.Namespace) -> int:
    def schema(engine: Any, catalog: Any) -> int:
        try:
            engine.load(catalog)
        except GatewayError as exc:  # the schema is still worth having when a policy is wrong
            print(f"gateway: warning: {exc}", file=sys.stderr)
        text = json.dumps(engine.schema_json(), indent=2, sort_keys=True)
        if args.output:
            Path(args.output).write_text(text + "\n")
            print(f"wrote {args.output}", file=sys.stderr)
        else:
            print(text)
        return 0

    return _with_policy_catalog(args, schema)


def _policy_test(args: argparse.Namespace) -> int:
    from gateway.policy.cases import run_policy_tests

    directory = Path(args.dir) if args.dir else _load(args, with_connectors=False).gateway.policies.dir
    results = run_policy_tests(directory)
    rows = [
        (
            "ok" if r.passed else "FAIL",
            r.file.name,
            r.name,
            r.expected,
            r.decision.effect.value if r.decision else "-",
            ",".join(r.decision.policy_ids) if r.decision else "-",
        )
        for r in results
    ]
    _print_table(("RESULT", "FILE", "CASE", "EXPECTED", "DECIDED", "POLICIES"), rows)
    failed = [r for r in results if not r.passed]
    for result in failed:
        print(f"\nFAIL {result.file.name}: {result.name}\n  " + "\n  ".join(result.problems))
    print(f"\n{len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed or not results else 0


def _policy_explain(args: argparse.Namespace) -> int:
    from gateway.identity.principal import Principal

    try:
        arguments = json.loads(args.args)
    except json.JSONDecodeError as exc:
        print(f"gateway: --args is not JSON: {exc}", file=sys.stderr)
        return 2
    principal = Principal(
        agent=args.agent, roles=tuple(args.role), scopes=tuple(args.scope), user=args.user, auth_method="explain"
    )

    def explain(engine: Any, catalog: Any) -> int:
        engine.load(catalog)
        entry = catalog.resolve_tool(args.tool)
        decision = engine.decide_call(principal, entry, arguments, reasoning=args.reasoning)
        visible = bool(engine.visible_tools(principal, (entry,)))
        print(decision.explain())
        print(f"  tool listed for this agent: {'yes' if visible else 'no'}")
        return 0 if decision.allowed else 3

    return _with_policy_catalog(args, explain)


# -- tools -----------------------------------------------------------------------------------


def _tools_list(args: argparse.Namespace) -> int:
    from gateway.runtime import GatewayRuntime

    config = _load(args)
    runtime = GatewayRuntime(config)

    async def show() -> int:
        async with runtime.connected():
            rows = []
            for entry in runtime.catalog.tools():
                annotations = entry.annotations
                hints = [
                    name
                    for name, key in (
                        ("read_only", "readOnlyHint"),
                        ("destructive", "destructiveHint"),
                        ("idempotent", "idempotentHint"),
                        ("open_world", "openWorldHint"),
                    )
                    if annotations.get(key)
                ]
                health = runtime.connectors[entry.connector].health.state.value
                rows.append((entry.exposed, entry.connector, entry.original, ",".join(hints) or "-", health))
            unhealthy = [
                (f"(no tools: {c.health.detail})", name, "-", "-", c.health.state.value)
                for name, c in runtime.connectors.items()
                if c.health.state.value not in ("healthy", "degraded")
            ]
            unhealthy += [  # a degraded backend serves its tools; what it listed beyond the bounds is not
                (f"(left out: {problem})", name, "-", "-", c.health.state.value)
                for name, c in runtime.connectors.items()
                for problem in c.health.problems
            ]
            problems = runtime.catalog.problems()
        if args.json:
            for row in rows:
                print(json.dumps(dict(zip(("exposed", "connector", "original", "annotations", "health"), row))))
            for row in unhealthy:
                print(json.dumps({"connector": row[1], "health": row[4], "detail": row[0]}))
            for name, found in problems.items():
                print(json.dumps({"connector": name, "health": "degraded", "problems": list(found)}))
        else:
            with_problems = [("(problems: see below)", name, "-", "-", "degraded") for name in problems]
            _print_table(
                ("EXPOSED NAME", "CONNECTOR", "ORIGINAL NAME", "ANNOTATIONS", "HEALTH"),
                rows + unhealthy + with_problems,
            )
        return 1 if _print_catalog_problems(runtime.catalog) else 0

    return _run(show)


def _print_catalog_problems(catalog: Any) -> bool:
    """Each connector problem on stderr, one per line; returns whether there were any."""
    problems = catalog.problems()
    for name, found in problems.items():
        for problem in found:
            print(f"gateway: connector '{name}': {problem}", file=sys.stderr)
    return bool(problems)


def _print_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    for row in (header, *rows):
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())
