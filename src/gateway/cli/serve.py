"""`gateway serve`: the gateway over streamable HTTP, in one process or several.

With more than one worker this process only supervises (`gateway.workers`); each worker is
this same command again, with a hidden `--worker-index`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gateway.cli.config_option import add_config_argument, config_path, load


def build(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--host", help="address to bind (overrides [server].host)")
    parser.add_argument("--port", type=int, help="port to bind (overrides [server].port)")
    parser.add_argument(
        "--workers",
        type=int,
        help="processes serving the port (overrides [server].workers; more than 1 needs PostgreSQL)",
    )
    parser.add_argument("--worker-index", type=int, help=argparse.SUPPRESS)  # set by the supervisor for its workers
    parser.set_defaults(run=_serve)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from gateway import workers
    from gateway.app import create_app
    from gateway.front.header_limit import protocol_class

    config = load(args)
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
        path = config_path(args)
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
