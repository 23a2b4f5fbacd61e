"""`gateway connectors`: tools for connector authors, one module per subcommand."""

from __future__ import annotations

import argparse

from gateway.cli import connectors_check, connectors_new


def build(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(title="connectors", metavar="ACTION")
    connectors_new.build(actions)
    connectors_check.build(actions)
