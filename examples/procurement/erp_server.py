"""An ERP's purchasing module as an MCP server: the third system of the procurement example.

`create_purchase_order` is the call that spends money, the one the gateway's ordering policy
guards. The ERP keeps every order it created in a JSON file (`ERP_ORDERS_FILE`, written whole
and renamed into place), so after a run anyone can see how many orders were really created: one
for a completed workflow, none for a refused one. Without `ERP_ORDERS_FILE` the orders live in
memory only. Run it over stdio (how the gateway starts it) or over streamable HTTP:

    ERP_ORDERS_FILE=orders.json python erp_server.py
    python erp_server.py --http 9013  # http://127.0.0.1:9013/mcp
"""

from __future__ import annotations

import argparse
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field

ORDERS_FILE_ENV = "ERP_ORDERS_FILE"


class PurchaseOrder(BaseModel):
    """One purchase order as the ERP stores it."""

    po_number: str = Field(description='e.g. "PO-2026-0001".')
    quote_id: str
    vendor_id: str
    item: str
    quantity: int
    amount: str = Field(description="Total as a decimal string.")
    currency: str
    status: str = "created"
    created_at: str = Field(description="ISO 8601, UTC.")


class PurchaseOrders(BaseModel):
    """Every order the ERP holds, oldest first, with the count so an empty answer is explicit."""

    count: int
    orders: list[PurchaseOrder]


class OrderBook:
    """The orders created so far, in memory and, when a file is named, on disk after every change."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.orders: list[PurchaseOrder] = []
        if path is not None and path.exists():
            self.orders = [PurchaseOrder(**order) for order in json.loads(path.read_text())["orders"]]

    def add(self, order: PurchaseOrder) -> None:
        self.orders.append(order)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            partial = self.path.with_suffix(".partial")
            partial.write_text(json.dumps({"orders": [o.model_dump() for o in self.orders]}, indent=2))
            partial.replace(self.path)

    def next_number(self) -> str:
        return f"PO-{datetime.now(UTC).year}-{len(self.orders) + 1:04d}"


BOOK = OrderBook(Path(os.environ[ORDERS_FILE_ENV]) if os.environ.get(ORDERS_FILE_ENV) else None)

mcp = MCPServer(
    "erp",
    title="ERP purchasing",
    version="1.0.0",
    instructions="Create purchase orders for chosen, compliance-checked quotes; list what was ordered.",
)


@mcp.tool(
    annotations=ToolAnnotations(
        title="Create a purchase order", read_only_hint=False, destructive_hint=False, idempotent_hint=False
    )
)
def create_purchase_order(
    quote_id: Annotated[str, Field(description='The chosen quote, e.g. "Q-7F3A21-V-100".')],
    vendor_id: Annotated[str, Field(description='The vendor of that quote, e.g. "V-100".')],
    item: Annotated[str, Field(description="What is bought.")],
    quantity: Annotated[int, Field(ge=1, description="How many units.")],
    amount: Annotated[float, Field(gt=0, description="The quote's total.")],
    currency: Annotated[str, Field(description="ISO 4217 code of the quote, e.g. EUR.")] = "EUR",
) -> PurchaseOrder:
    """Create a purchase order for a quote: this commits the company to pay the vendor."""
    if any(order.quote_id == quote_id for order in BOOK.orders):
        raise ToolError(f"Quote {quote_id} is already ordered. List the purchase orders to find its number.")
    stamp = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    order = PurchaseOrder(
        po_number=BOOK.next_number(),
        quote_id=quote_id,
        vendor_id=vendor_id,
        item=item,
        quantity=quantity,
        amount=f"{amount:.2f}",
        currency=currency,
        created_at=stamp,
    )
    BOOK.add(order)
    return order


@mcp.tool(annotations=ToolAnnotations(title="List purchase orders", read_only_hint=True, idempotent_hint=True))
def list_purchase_orders() -> PurchaseOrders:
    """Every purchase order created so far, oldest first."""
    return PurchaseOrders(count=len(BOOK.orders), orders=list(BOOK.orders))


def main() -> None:
    """Serve over stdio unless --http asks for a local HTTP port."""
    parser = argparse.ArgumentParser(description="Demo ERP purchasing MCP server.")
    parser.add_argument("--http", type=int, metavar="PORT", help="serve streamable HTTP on 127.0.0.1:PORT/mcp")
    args = parser.parse_args()
    if args.http is None:
        mcp.run()
    else:
        mcp.run("streamable-http", host="127.0.0.1", port=args.http)


if __name__ == "__main__":
    main()
