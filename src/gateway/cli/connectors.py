"""`gateway connectors`: commands for connector authors, one module per subcommand."""

from __future__ import annotations

import argparse

from gateway.cli import connectors_check, connectors_new, connectors_preview


def build(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(title="connectors", metavar="ACTION")
    connectors_preview.build(
        actions.add_parser("preview", help="show the tools an OpenAPI connector file makes, and what it leaves out")
    )
    connectors_new.build(actions)
    connectors_check.build(actions)
