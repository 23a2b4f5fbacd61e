"""Vendor compliance as an MCP server: the second system of the procurement example.

`check_vendor` screens a supplier against the sanctions list and the company register. A vendor
that passes gets a result the purchasing agent can quote; a vendor that fails is a **tool
error**, not a result: the check did not succeed, so the gateway does not count it as done in
the workflow, and the ordering policy keeps refusing the purchase order. Run it over stdio (how
the gateway starts it) or over streamable HTTP:

    python compliance_server.py              # stdio
    python compliance_server.py --http 9012  # http://127.0.0.1:9012/mcp
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Annotated, Literal

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field

#: The register: vendor id -> (name, registration number or None, on the sanctions list).
VENDORS = {
    "V-100": ("Northwind Supplies", "DE-HRB-104512", False),
    "V-200": ("Contoso Hardware", "NL-KVK-5523190", False),
    "V-300": ("Fabrikam Trading", None, True),
}


class ComplianceResult(BaseModel):
    """A passed check: what was screened and when, for the purchase order's file."""

    vendor_id: str
    vendor_name: str
    result: Literal["pass"] = "pass"
    sanctions: Literal["clear"] = Field(default="clear", description="Not on the sanctions list.")
    registration: str = Field(description="The vendor's company registration number, found active.")
    checked_at: str = Field(description="ISO 8601, UTC.")


mcp = MCPServer(
    "compliance",
    title="Vendor compliance",
    version="1.0.0",
    instructions="Screen a vendor (sanctions list and company register) before anyone orders from it.",
)


@mcp.tool(
    annotations=ToolAnnotations(
        title="Check a vendor", read_only_hint=True, idempotent_hint=True, open_world_hint=False
    )
)
def check_vendor(
    vendor_id: Annotated[str, Field(description='The vendor to screen, e.g. "V-100".')],
) -> ComplianceResult:
    """Screen a vendor against the sanctions list and the company register: pass, or a tool error saying why not."""
    key = vendor_id.strip().upper()
    if key not in VENDORS:
        raise ToolError(f"Vendor {vendor_id!r} is not in the register: check the id on the quote.")
    name, registration, sanctioned = VENDORS[key]
    if sanctioned:
        raise ToolError(f"Vendor {key} ({name}) fails compliance: it is on the sanctions list. Choose another quote.")
    if registration is None:
        raise ToolError(f"Vendor {key} ({name}) fails compliance: no active company registration.")
    stamp = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return ComplianceResult(vendor_id=key, vendor_name=name, registration=registration, checked_at=stamp)


def main() -> None:
    """Serve over stdio unless --http asks for a local HTTP port."""
    parser = argparse.ArgumentParser(description="Demo vendor-compliance MCP server.")
    parser.add_argument("--http", type=int, metavar="PORT", help="serve streamable HTTP on 127.0.0.1:PORT/mcp")
    args = parser.parse_args()
    if args.http is None:
        mcp.run()
    else:
        mcp.run("streamable-http", host="127.0.0.1", port=args.http)


if __name__ == "__main__":
    main()
