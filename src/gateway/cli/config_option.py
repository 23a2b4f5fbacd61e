"""The `--config` option of the commands that read gateway.toml, and loading the file it names.

One function decides which file that is (`--config`, else `$GATEWAY_CONFIG`, else
`./gateway.toml` when present), so `serve` hands its workers the very file it loaded itself.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from gateway.config import Config, load_config
from gateway.logs import configure_logging

DEFAULT_CONFIG = "gateway.toml"


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        default=os.environ.get("GATEWAY_CONFIG"),
        help=f"path to gateway.toml (default: $GATEWAY_CONFIG, else ./{DEFAULT_CONFIG} if present)",
    )


def config_path(args: argparse.Namespace) -> str | None:
    """The file to read; None when there is none, and the built-in defaults apply."""
    if args.config is not None:
        return str(args.config)
    return DEFAULT_CONFIG if Path(DEFAULT_CONFIG).is_file() else None


def load(args: argparse.Namespace, *, with_connectors: bool = True) -> Config:
    """The configuration, with logging set up as it says, before the command does anything worth logging."""
    config = load_config(config_path(args), with_connectors=with_connectors)
    configure_logging(config.gateway.logging.level, config.gateway.logging.format)
    from gateway.telemetry import install_log_correlation

    install_log_correlation()
    return config
