"""A small finance system exposed as an MCP server: the quick start's second demo backend.

It holds invoices for the customers of the demo CRM (same C-10xx ids) and can pay them, which
makes it the natural place to see the gateway's policies stop a destructive call. Data lives in
memory and is reseeded on every start. Run it over stdio or over streamable HTTP:

    python finance_server.py              # stdio
    python finance_server.py --http 9002  # http://127.0.0.1:9002/mcp
"""

from __future__ import annotations

import argparse
import itertools
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated

from mcp import MCPError
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceNotFoundError, ToolError
from mcp.types import INVALID_PARAMS, ToolAnnotations
from pydantic import BaseModel, Field

STATUSES = ("open", "paid", "overdue")

InvoiceId = Annotated[str, Field(description='Invoice id, e.g. "INV-2001".')]


class Invoice(BaseModel):
    """One invoice. Amounts are decimal strings so cents never drift through float rounding."""

    id: str = Field(description='Stable identifier, e.g. "INV-2001".')
    customer_id: str = Field(description='The CRM customer billed, e.g. "C-1001".')
    amount: str = Field(description='Amount due as a decimal string, e.g. "1250.00".')
    currency: str = Field(description="ISO 4217 currency code.")
    due_date: str = Field(description="ISO 8601 date.")
    status: str = Field(description=f"One of {', '.join(STATUSES)}.")
    payment_id: str | None = Field(default=None, description="Set once the invoice is paid.")


class InvoiceList(BaseModel):
    """Invoices matching a filter, with the count so an empty answer is explicit."""

    count: int
    invoices: list[Invoice]


class PaymentConfirmation(BaseModel):
    """What a successful payment returns: enough to quote in a reply or to reconcile later."""

    payment_id: str
    invoice_id: str
    amount: str
    currency: str
    paid_at: str = Field(description="ISO 8601 timestamp in UTC.")
    invoice_status: str


def _seed() -> dict[str, Invoice]:
    """Build the demo invoices: a mix of open, overdue and already-paid ones."""
    rows = [
        ("C-1001", "12500.00", "USD", "2026-12-15", "open"),
        ("C-1002", "3400.00", "USD", "2026-10-31", "overdue"),
        ("C-1003", "48000.00", "EUR", "2026-09-30", "overdue"),
        ("C-1005", "2150.50", "USD", "2026-11-15", "paid"),
        ("C-1007", "27300.00", "NOK", "2027-01-10", "open"),
        ("C-1008", "980.00", "USD", "2026-10-15", "overdue"),
        ("C-1009", "640.00", "USD", "2026-12-01", "open"),
        ("C-1011", "15750.00", "EUR", "2026-11-01", "paid"),
    ]
    invoices = {}
    for number, (customer_id, amount, currency, due_date, status) in enumerate(rows, start=2001):
        invoice_id = f"INV-{number}"
        payment_id = f"PAY-{number + 1000}" if status == "paid" else None
        invoices[invoice_id] = Invoice(
            id=invoice_id,
            customer_id=customer_id,
            amount=amount,
            currency=currency,
            due_date=due_date,
            status=status,
            payment_id=payment_id,
        )
    return invoices


INVOICES = _seed()
# Sequential ids keep demo output predictable; they start above the ids of the seeded payments.
_PAYMENT_NUMBERS = itertools.count(5001)

mcp = MCPServer(
    "finance",
    title="Finance",
    version="1.0.0",
    instructions="Invoices and payments. Invoice ids look like INV-2001; customer ids match the CRM (C-1001).",
)


def _find(invoice_id: str) -> Invoice | None:
    """Look an invoice up, forgiving the case and stray spaces a model tends to add."""
    return INVOICES.get(invoice_id.strip().upper())


@mcp.tool(
    annotations=ToolAnnotations(
        title="List invoices", read_only_hint=True, idempotent_hint=True, open_world_hint=False
    ),
)
def list_invoices(
    status: Annotated[str | None, Field(description=f"Only invoices in this status: {', '.join(STATUSES)}.")] = None,
    customer_id: Annotated[
        str | None, Field(description='Only invoices billed to this customer, e.g. "C-1001".')
    ] = None,
) -> InvoiceList:
    """List invoices, optionally filtered by status and/or customer. Without filters, lists every invoice."""
    if status is not None and status not in STATUSES:
        raise ToolError(f"Unknown status {status!r}. Use one of: {', '.join(STATUSES)}.")
    wanted_customer = customer_id.strip().upper() if customer_id else None
    matches = [
        invoice
        for invoice in INVOICES.values()
        if (status is None or invoice.status == status) and (wanted_customer in (None, invoice.customer_id))
    ]
    return InvoiceList(count=len(matches), invoices=matches)


@mcp.tool(
    annotations=ToolAnnotations(
        title="Pay invoice",
        read_only_hint=False,
        destructive_hint=True,
        idempotent_hint=False,
        open_world_hint=True,
    ),
)
def pay_invoice(
    invoice_id: InvoiceId,
    amount: Annotated[float, Field(gt=0, description="Amount to pay; must equal the full outstanding amount.")],
) -> PaymentConfirmation:
    """Pay an open or overdue invoice in full and return the payment confirmation.

    Money leaves the company and cannot be recalled from here, so the amount must match the
    invoice exactly: a mismatch usually means the caller is looking at the wrong invoice.
    """
    invoice = _find(invoice_id)
    if invoice is None:
        raise ToolError(f"No invoice with id {invoice_id!r}. Use list_invoices to find the right id.")
    if invoice.status == "paid":
        raise ToolError(f"Invoice {invoice.id} is already paid (payment {invoice.payment_id}).")
    # str() gives the shortest decimal that round-trips the float, so 3400.0 matches "3400.00" and 3400.001 does not.
    offered = Decimal(str(amount))
    if offered != Decimal(invoice.amount):
        raise ToolError(
            f"Amount {offered} does not match the outstanding {invoice.amount} {invoice.currency} on {invoice.id}."
        )
    payment_id = f"PAY-{next(_PAYMENT_NUMBERS)}"
    INVOICES[invoice.id] = invoice.model_copy(update={"status": "paid", "payment_id": payment_id})
    return PaymentConfirmation(
        payment_id=payment_id,
        invoice_id=invoice.id,
        amount=invoice.amount,
        currency=invoice.currency,
        paid_at=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        invoice_status="paid",
    )


@mcp.resource(
    "finance://invoices/{invoice_id}", name="invoice", mime_type="application/json", description="One invoice."
)
def invoice_resource(invoice_id: str) -> str:
    """Expose each invoice as a resource so a client can attach it to a conversation as context."""
    invoice = _find(invoice_id)
    if invoice is None:
        raise ResourceNotFoundError(f"No invoice with id {invoice_id!r}.")
    return invoice.model_dump_json(indent=2)


@mcp.prompt(title="Overdue reminder")
def overdue_reminder(invoice_id: InvoiceId) -> str:
    """Ask the model to draft a polite payment reminder for an invoice."""
    invoice = _find(invoice_id)
    if invoice is None:
        # A protocol error with our own message; any other exception would reach the client as a generic failure.
        raise MCPError(code=INVALID_PARAMS, message=f"No invoice with id {invoice_id!r}.")
    if invoice.status == "paid":
        raise MCPError(code=INVALID_PARAMS, message=f"Invoice {invoice.id} is already paid; no reminder needed.")
    return (
        f"Draft a short, polite email reminding customer {invoice.customer_id} that invoice {invoice.id} "
        f"for {invoice.amount} {invoice.currency} was due on {invoice.due_date} and is {invoice.status}. "
        "Offer help if there is a problem with the invoice, and do not threaten penalties."
    )


def main() -> None:
    """Serve over stdio unless --http asks for a local HTTP port."""
    parser = argparse.ArgumentParser(description="Demo finance MCP server (in-memory data, reset on every start).")
    parser.add_argument("--http", type=int, metavar="PORT", help="serve streamable HTTP on 127.0.0.1:PORT/mcp")
    args = parser.parse_args()
    if args.http is None:
        mcp.run()
    else:
        mcp.run("streamable-http", host="127.0.0.1", port=args.http)


if __name__ == "__main__":
    main()
