"""The quotes agent: asks the suppliers for quotes, chooses the cheapest, and says so in the workflow.

python quotes_agent.py --key KEY --workflow WORKFLOW [--item laptop --quantity 40]
"""

from __future__ import annotations

from decimal import Decimal

from procurement_agent import WorkflowAgent, arguments, run


async def work(agent: WorkflowAgent, item: str, quantity: int) -> int:
    offers = await agent.call("quotes__request_quotes", {"item": item, "quantity": quantity})
    quotes = offers["quotes"]
    for quote in quotes:
        print(
            f"    {quote['quote_id']}  {quote['vendor_name']:<20} {Decimal(quote['total']):>12,.2f} "
            f"{quote['currency']}  {quote['lead_time_days']} days"
        )
    best = min(quotes, key=lambda quote: Decimal(quote["total"]))
    reason = f"Cheapest of {len(quotes)} quotes, delivered in {best['lead_time_days']} days."
    chosen = await agent.call("quotes__choose_quote", {"quote_id": best["quote_id"], "reason": reason})
    print(f"  ✓ chose {chosen['quote_id']} from {chosen['vendor_name']} ({chosen['vendor_id']})")
    await agent.note(
        f"Chose {chosen['quote_id']} from {chosen['vendor_name']} ({chosen['vendor_id']}): "
        f"{Decimal(chosen['total']):,.2f} {chosen['currency']} for {quantity} {item}. "
        f"Vendor {chosen['vendor_id']} needs its compliance check before anyone orders."
    )
    return 0


def main() -> None:
    parser = arguments("Scripted quotes agent of the procurement example.")
    parser.add_argument("--item", default="laptop", help="what to buy (laptop, monitor, desk-chair)")
    parser.add_argument("--quantity", type=int, default=40, help="how many")
    args = parser.parse_args()
    run("quotes agent", args, lambda agent: work(agent, args.item, args.quantity))


if __name__ == "__main__":
    main()
