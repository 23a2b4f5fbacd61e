"""`gateway config reference`: every configuration key, rendered from the settings themselves.

`docs/configuration.md` is this command's output, so the reference cannot drift from the code.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def build(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(title="config", metavar="ACTION")
    reference = actions.add_parser(
        "reference", help="print every gateway.toml and connector key with its type, default and meaning (Markdown)"
    )
    reference.add_argument("--output", "-o", help="file to write (default: stdout)")
    reference.set_defaults(run=_reference)


def _reference(args: argparse.Namespace) -> int:
    from gateway.config_reference import write_reference

    text = write_reference(Path(args.output) if args.output else None)
    if args.output:
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
