"""A small CRM exposed as an MCP server: one of the two demo backends behind the quick start's gateway.

The data lives in memory and is reseeded on every start, so the demo can be replayed from a
clean state. Run it over stdio (how the gateway launches it by default) or over streamable HTTP:

    python crm_server.py              # stdio
    python crm_server.py --http 9001  # http://127.0.0.1:9001/mcp
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import Annotated

from mcp import MCPError
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceNotFoundError, ToolError
from mcp.types import INVALID_PARAMS, ToolAnnotations
from pydantic import BaseModel, Field

# Values are checked as well as field names, so a typo from a model surfaces as a tool error
# instead of silently putting the record into a state the rest of the business never expects.
EDITABLE_FIELDS = ("status", "tier", "owner", "notes", "email")
STATUSES = ("prospect", "active", "at_risk", "churned")
TIERS = ("starter", "growth", "enterprise")

CustomerId = Annotated[str, Field(description='Customer id, e.g. "C-1001".')]


class Customer(BaseModel):
    """One customer record, as returned by every tool and resource."""

    id: str = Field(description='Stable identifier, e.g. "C-1001".')
    name: str = Field(description="Main contact at the customer.")
    company: str
    email: str
    tier: str = Field(description=f"Commercial tier: one of {', '.join(TIERS)}.")
    status: str = Field(description=f"Lifecycle status: one of {', '.join(STATUSES)}.")
    owner: str = Field(description="Account owner on our side.")
    notes: str
    updated_at: str = Field(description="Last change, ISO 8601 in UTC.")


class SearchResults(BaseModel):
    """Matches for a search, with the total so a caller knows when `limit` cut the list short."""

    query: str
    total: int = Field(description="Number of matching customers before `limit` was applied.")
    customers: list[Customer]


def _seed() -> dict[str, Customer]:
    """Build the demo data set: a dozen accounts spread over tiers, statuses and owners."""
    rows = [
        ("Dana Whitfield", "Acme Logistics", "enterprise", "active", "maria.chen", "Renewal due in Q1."),
        ("Omar Haddad", "Acme Robotics", "growth", "active", "james.ortiz", "Asked about SSO."),
        ("Lena Vogel", "Brightline Health", "enterprise", "at_risk", "maria.chen", "Two escalations last month."),
        ("Kenji Sato", "Cobalt Mining", "starter", "prospect", "priya.nair", "Trial started."),
        ("Aisha Bello", "Delta Freight", "growth", "active", "james.ortiz", ""),
        ("Tom Becker", "Evergreen Foods", "starter", "churned", "priya.nair", "Moved to a competitor."),
        ("Sofia Rossi", "Fjord Energy", "enterprise", "active", "maria.chen", "Expanding to 3 new sites."),
        ("Raj Patel", "Granite Insurance", "growth", "at_risk", "james.ortiz", "Invoice dispute open."),
        ("Mei Lin", "Harbor Analytics", "starter", "active", "priya.nair", ""),
        ("Lucas Moreau", "Ionic Labs", "growth", "prospect", "maria.chen", "Security review in progress."),
        ("Nora Jensen", "Juniper Retail", "enterprise", "active", "james.ortiz", "Reference customer."),
        ("Diego Alvarez", "Kestrel Aviation", "growth", "active", "priya.nair", "Pilot went well."),
    ]
    customers = {}
    for number, (name, company, tier, status, owner, notes) in enumerate(rows, start=1001):
        first, last = name.lower().split()
        domain = company.lower().replace(" ", "") + ".example"
        customer_id = f"C-{number}"
        customers[customer_id] = Customer(
            id=customer_id,
            name=name,
            company=company,
            email=f"{first}.{last}@{domain}",
            tier=tier,
            status=status,
            owner=owner,
            notes=notes,
            updated_at=f"2026-10-{number - 990:02d}T09:30:00Z",
        )
    return customers


CUSTOMERS = _seed()

mcp = MCPServer(
    "crm",
    title="CRM",
    version="1.0.0",
    instructions="Customer records: search, read and update accounts. Customer ids look like C-1001.",
)


def _find(customer_id: str) -> Customer | None:
    """Look a customer up, forgiving the case and stray spaces a model tends to add."""
    return CUSTOMERS.get(customer_id.strip().upper())


def _require(customer_id: str) -> Customer:
    """Return the customer or fail the tool call with a message a model can act on."""
    customer = _find(customer_id)
    if customer is None:
        raise ToolError(f"No customer with id {customer_id!r}. Use search_customers to find the right id.")
    return customer


@mcp.tool(
    annotations=ToolAnnotations(
        title="Search customers", read_only_hint=True, idempotent_hint=True, open_world_hint=False
    ),
)
def search_customers(
    query: Annotated[str, Field(description="Text to look for in name, company or email (case-insensitive).")],
    limit: Annotated[int, Field(ge=1, le=50, description="Maximum number of customers to return.")] = 10,
) -> SearchResults:
    """Find customers whose name, company or email contains the query. An empty query lists everyone."""
    needle = query.strip().lower()
    matches = [c for c in CUSTOMERS.values() if needle in f"{c.name}\n{c.company}\n{c.email}".lower()]
    return SearchResults(query=query, total=len(matches), customers=matches[:limit])


@mcp.tool(
    annotations=ToolAnnotations(title="Get customer", read_only_hint=True, idempotent_hint=True, open_world_hint=False),
)
def get_customer(customer_id: CustomerId) -> Customer:
    """Read one customer record by id."""
    return _require(customer_id)


@mcp.tool(
    annotations=ToolAnnotations(
        title="Update customer record",
        read_only_hint=False,
        destructive_hint=True,
        idempotent_hint=True,
        open_world_hint=False,
    ),
)
def update_record(
    customer_id: CustomerId,
    field: Annotated[str, Field(description=f"Field to change: one of {', '.join(EDITABLE_FIELDS)}.")],
    value: Annotated[str, Field(description="New value; status and tier only accept their listed values.")],
) -> Customer:
    """Overwrite one field of a customer record and return the updated record.

    The previous value is not kept, which is why this tool is marked destructive.
    """
    customer = _require(customer_id)
    if field not in EDITABLE_FIELDS:
        raise ToolError(f"Field {field!r} cannot be changed. Editable fields: {', '.join(EDITABLE_FIELDS)}.")
    allowed = {"status": STATUSES, "tier": TIERS}.get(field)
    if allowed is not None and value not in allowed:
        raise ToolError(f"Invalid {field} {value!r}. Allowed values: {', '.join(allowed)}.")
    if field == "email" and "@" not in value:
        raise ToolError(f"{value!r} is not an email address.")
    stamp = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    updated = customer.model_copy(update={field: value, "updated_at": stamp})
    CUSTOMERS[customer.id] = updated
    return updated


@mcp.resource(
    "crm://customers/{customer_id}", name="customer", mime_type="application/json", description="One customer record."
)
def customer_resource(customer_id: str) -> str:
    """Expose each record as a resource so a client can attach it to a conversation as context."""
    customer = _find(customer_id)
    if customer is None:
        raise ResourceNotFoundError(f"No customer with id {customer_id!r}.")
    return customer.model_dump_json(indent=2)


@mcp.resource(
    "crm://schema", name="schema", mime_type="application/json", description="Customer fields and which can change."
)
def schema_resource() -> str:
    """Describe the record shape so a model can plan updates without trial and error."""
    return json.dumps(
        {
            "record": Customer.model_json_schema(),
            "editable_fields": list(EDITABLE_FIELDS),
            "allowed_values": {"status": list(STATUSES), "tier": list(TIERS)},
        },
        indent=2,
    )


@mcp.prompt(title="Account summary")
def account_summary(customer_id: CustomerId) -> str:
    """Ask the model for a short account briefing grounded in the current record."""
    customer = _find(customer_id)
    if customer is None:
        # A protocol error with our own message; any other exception would reach the client as a generic failure.
        raise MCPError(code=INVALID_PARAMS, message=f"No customer with id {customer_id!r}.")
    return (
        f"Write a five-line briefing on the account {customer.company} ({customer.id}) for its owner, "
        f"{customer.owner}. Cover the relationship health, the next step and any risk. "
        f"Use only this record:\n\n{customer.model_dump_json(indent=2)}"
    )


def main() -> None:
    """Serve over stdio unless --http asks for a local HTTP port."""
    parser = argparse.ArgumentParser(description="Demo CRM MCP server (in-memory data, reset on every start).")
    parser.add_argument("--http", type=int, metavar="PORT", help="serve streamable HTTP on 127.0.0.1:PORT/mcp")
    args = parser.parse_args()
    if args.http is None:
        mcp.run()
    else:
        mcp.run("streamable-http", host="127.0.0.1", port=args.http)


if __name__ == "__main__":
    main()
