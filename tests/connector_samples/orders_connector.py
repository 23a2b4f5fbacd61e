"""A Python connector for the tests, written with `gateway.sdk` as an author would write one."""

from __future__ import annotations

from typing import Annotated

import anyio
from pydantic import BaseModel, Field

from gateway.sdk import Connector, ToolError


class OrderSettings(BaseModel):
    currency: str
    api_key: str


class Order(BaseModel):
    order_id: str
    amount: int
    currency: str


connector = Connector("orders", settings=OrderSettings)
started: list[str] = []


@connector.on_start
async def open_client() -> None:
    if connector.settings.api_key != "k-123":
        raise RuntimeError("the api_key was not passed through")
    started.append("started")


@connector.health
def health() -> str:
    return f"serving in {connector.settings.currency}"


@connector.tool(read_only=True, idempotent=True)
async def get_order(order_id: Annotated[str, Field(description="The order's id, like 'o-1'.")]) -> Order:
    """Read one order."""
    if order_id == "o-missing":
        raise ToolError(f"No order has the id {order_id!r}; list orders to find the right one.")
    return Order(order_id=order_id, amount=250, currency=connector.settings.currency)


@connector.tool(destructive=True)
async def refund(
    order_id: str,
    amount: Annotated[int, Field(ge=1, description="Whole currency units to refund.")],
    note: str = "",
) -> dict[str, object]:
    """Refund part or all of an order."""
    return {"order_id": order_id, "refunded": amount, "note": note}


@connector.tool()
async def crash(why: str) -> str:
    """Fails with an unexpected exception, as a bug would."""
    raise KeyError(f"internal detail {why}")


@connector.tool()
async def slow(seconds: float = 60.0) -> str:
    """Sleeps, to test timeouts and cancellation."""
    await anyio.sleep(seconds)
    return "woke"
