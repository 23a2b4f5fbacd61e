"""The purchasing agent: orders the workflow's chosen quote once its vendor has passed compliance.

Normally it reads everything from `gateway__workflow_status`: the chosen quote (the quotes
agent's shared `choose_quote` result), the compliance check and the other agents' notes. Handed
a quote directly (`--quote-id`, `--vendor`, `--amount`, as a hasty request from a person would),
it orders that at once without looking: the gateway's ordering policy then refuses the order
until compliance has checked the vendor in this workflow, and the agent prints the reason.

    python purchasing_agent.py --key KEY --workflow WORKFLOW
    python purchasing_agent.py --key KEY --workflow WORKFLOW --quote-id Q-7F3A21-V-100 --vendor V-100 --amount 43240
"""

from __future__ import annotations

import argparse
from decimal import Decimal
from typing import Any

from procurement_agent import WorkflowAgent, arguments, run


async def work(agent: WorkflowAgent, handed: dict[str, Any] | None) -> int:
    if handed is not None:
        print(f"  handed quote {handed['quote_id']} directly: ordering it without reading the workflow")
        order = handed
    else:
        state = await agent.status()
        for note in state.notes:
            print(f"  note from {note.get('agent')}: {note.get('text')}")
        chosen = state.last_success("quotes__choose_quote")
        check = state.last_success("compliance__check_vendor")
        quote = chosen.result() if chosen else None
        if quote is None:
            print("  ✗ no quote has been chosen in this workflow yet: nothing to order")
            return 1
        checked = check.result() if check else None
        print(f"  read the workflow: chosen quote {quote['quote_id']} (by {chosen.agent if chosen else '?'})")
        if checked is not None:
            by = check.agent if check else "?"
            print(f"  read the workflow: compliance {checked.get('result')} for {checked.get('vendor_id')} (by {by})")
            if checked.get("vendor_id") != quote["vendor_id"]:
                print(f"  ✗ compliance checked {checked.get('vendor_id')}, not the chosen vendor {quote['vendor_id']}")
                return 1
        order = {
            "quote_id": quote["quote_id"],
            "vendor_id": quote["vendor_id"],
            "item": quote["item"],
            "quantity": quote["quantity"],
            "amount": float(Decimal(quote["total"])),
            "currency": quote["currency"],
        }
    created = await agent.call("erp__create_purchase_order", order)
    print(
        f"  ✓ purchase order {created['po_number']}: {created['quantity']} {created['item']} from "
        f"{created['vendor_id']}, {Decimal(created['amount']):,.2f} {created['currency']} ({created['status']})"
    )
    return 0


def main() -> None:
    parser = arguments("Scripted purchasing agent of the procurement example.")
    parser.add_argument("--quote-id", help="order this quote directly instead of the workflow's chosen one")
    parser.add_argument("--vendor", help="its vendor id (with --quote-id)")
    parser.add_argument("--amount", type=float, help="its total (with --quote-id)")
    parser.add_argument("--item", default="laptop", help="its item (with --quote-id)")
    parser.add_argument("--quantity", type=int, default=40, help="its quantity (with --quote-id)")
    args = parser.parse_args()
    handed = _handed(parser, args)
    run("purchasing agent", args, lambda agent: work(agent, handed))


def _handed(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, Any] | None:
    if args.quote_id is None:
        return None
    if args.vendor is None or args.amount is None:
        parser.error("--quote-id needs --vendor and --amount")
    return {
        "quote_id": args.quote_id,
        "vendor_id": args.vendor,
        "item": args.item,
        "quantity": args.quantity,
        "amount": args.amount,
        "currency": "EUR",
    }


if __name__ == "__main__":
    main()
