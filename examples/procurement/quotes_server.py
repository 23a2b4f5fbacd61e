"""Supplier quotes as an MCP server: the first system of the procurement example.

A buyer asks for quotes on an item (`request_quotes`), every supplier answers at once with a
price and a lead time, and the buyer records which quote it chose (`choose_quote`). The chosen
quote is what the purchasing agent later orders, so `choose_quote` returns everything an order
needs. Data lives in memory and is reseeded on every start. Run it over stdio (how the gateway
starts it) or over streamable HTTP:

    python quotes_server.py              # stdio
    python quotes_server.py --http 9011  # http://127.0.0.1:9011/mcp
"""

from __future__ import annotations

import argparse
import secrets
from decimal import Decimal
from typing import Annotated

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field

#: List prices per unit, in EUR, of what the demo suppliers sell.
ITEMS = {"laptop": Decimal("1150.00"), "monitor": Decimal("210.00"), "desk-chair": Decimal("340.00")}
#: The suppliers: id, name, price factor against the list price, lead time in days.
SUPPLIERS = (
    ("V-100", "Northwind Supplies", Decimal("0.94"), 6),
    ("V-200", "Contoso Hardware", Decimal("0.97"), 3),
    ("V-300", "Fabrikam Trading", Decimal("1.02"), 10),
)
CURRENCY = "EUR"


class Quote(BaseModel):
    """One supplier's offer for a request; amounts are decimal strings so cents never drift."""

    quote_id: str = Field(description='Stable identifier, e.g. "Q-7F3A21-V-100".')
    request_id: str
    vendor_id: str = Field(description='The supplier, e.g. "V-100" (the id compliance checks).')
    vendor_name: str
    item: str
    quantity: int
    unit_price: str
    total: str
    currency: str
    lead_time_days: int


class QuoteRequest(BaseModel):
    """A request for quotes and every supplier's answer, cheapest first."""

    request_id: str
    item: str
    quantity: int
    quotes: list[Quote]


class ChosenQuote(Quote):
    """The quote the buyer chose, with the buyer's reason: what the purchase order will be for."""

    reason: str


QUOTES: dict[str, Quote] = {}
CHOSEN: dict[str, ChosenQuote] = {}

mcp = MCPServer(
    "quotes",
    title="Supplier quotes",
    version="1.0.0",
    instructions="Request quotes from the approved suppliers, then record the one you choose.",
)


@mcp.tool(annotations=ToolAnnotations(title="Request quotes", read_only_hint=False, destructive_hint=False))
def request_quotes(
    item: Annotated[str, Field(description=f"What to buy: one of {', '.join(ITEMS)}.")],
    quantity: Annotated[int, Field(ge=1, le=10_000, description="How many units.")],
) -> QuoteRequest:
    """Ask every supplier for a quote on `quantity` units of `item`; the answers come back cheapest first."""
    wanted = item.strip().lower()
    if wanted not in ITEMS:
        raise ToolError(f"No supplier sells {item!r}. Items with quotes: {', '.join(ITEMS)}.")
    # Random, not counted: the ERP keeps its orders across restarts, and a quote id must never recur.
    request_id = f"RFQ-{secrets.token_hex(3).upper()}"
    quotes = []
    for vendor_id, vendor_name, factor, lead_time in SUPPLIERS:
        unit_price = (ITEMS[wanted] * factor).quantize(Decimal("0.01"))
        quote = Quote(
            quote_id=f"Q-{request_id.removeprefix('RFQ-')}-{vendor_id}",
            request_id=request_id,
            vendor_id=vendor_id,
            vendor_name=vendor_name,
            item=wanted,
            quantity=quantity,
            unit_price=str(unit_price),
            total=str(unit_price * quantity),
            currency=CURRENCY,
            lead_time_days=lead_time,
        )
        QUOTES[quote.quote_id] = quote
        quotes.append(quote)
    quotes.sort(key=lambda quote: Decimal(quote.total))
    return QuoteRequest(request_id=request_id, item=wanted, quantity=quantity, quotes=quotes)


@mcp.tool(annotations=ToolAnnotations(title="Choose a quote", read_only_hint=False, destructive_hint=False))
def choose_quote(
    quote_id: Annotated[str, Field(description='The quote to accept, e.g. "Q-7F3A21-V-100".')],
    reason: Annotated[str, Field(description="Why this quote: kept with the choice for whoever orders it.")],
) -> ChosenQuote:
    """Record the quote chosen for its request; a request has one chosen quote, and choosing again replaces it."""
    quote = QUOTES.get(quote_id.strip().upper())
    if quote is None:
        raise ToolError(f"No quote with id {quote_id!r}. Use request_quotes first and pick one of its quote ids.")
    chosen = ChosenQuote(**quote.model_dump(), reason=reason)
    CHOSEN[quote.request_id] = chosen
    return chosen


def main() -> None:
    """Serve over stdio unless --http asks for a local HTTP port."""
    parser = argparse.ArgumentParser(description="Demo supplier-quotes MCP server (in memory, reset on every start).")
    parser.add_argument("--http", type=int, metavar="PORT", help="serve streamable HTTP on 127.0.0.1:PORT/mcp")
    args = parser.parse_args()
    if args.http is None:
        mcp.run()
    else:
        mcp.run("streamable-http", host="127.0.0.1", port=args.http)


if __name__ == "__main__":
    main()
