"""Connectors that break the contract, for the tests: one raises at start, one in many ways."""

from __future__ import annotations

import time

from gateway.sdk import Connector

connector = Connector("fails-to-start")


@connector.on_start
def connect() -> None:
    raise ConnectionError("the billing API refused the credentials (401)")


@connector.tool()
def anything() -> str:
    """Never reached."""
    return "x"


careless = Connector("careless")


@careless.health
def unwell() -> None:
    raise RuntimeError("the upstream API is down")


@careless.tool()
async def slow(seconds: float = 3.0) -> str:
    """Blocks the event loop, so it cannot be cancelled: the mistake the contract catches."""
    time.sleep(seconds)
    return "late"


@careless.tool()
def undocumented(value: int) -> int:
    return value
