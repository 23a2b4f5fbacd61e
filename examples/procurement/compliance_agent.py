"""The compliance agent: screens the vendor of the workflow's chosen quote and leaves a note.

It finds the chosen quote in `gateway__workflow_status` (the quotes agent's `choose_quote`
step, whose result the quotes connector shares), checks that vendor, and leaves a hand-off note
for the purchasing agent with the result.

    python compliance_agent.py --key KEY --workflow WORKFLOW
"""

from __future__ import annotations

from procurement_agent import Refused, WorkflowAgent, arguments, run


async def work(agent: WorkflowAgent) -> int:
    state = await agent.status()
    chosen = state.last_success("quotes__choose_quote")
    quote = chosen.result() if chosen else None
    if quote is None:
        print("  ✗ no quote has been chosen in this workflow yet: nothing to check")
        return 1
    print(f"  read the workflow: {chosen.agent} chose {quote['quote_id']} from vendor {quote['vendor_id']}")
    try:
        check = await agent.call("compliance__check_vendor", {"vendor_id": quote["vendor_id"]})
    except Refused as exc:
        await agent.note(f"Vendor {quote['vendor_id']} FAILED compliance, do not order: {exc}")
        raise
    print(f"  ✓ {check['vendor_name']} ({check['vendor_id']}): {check['result']}, sanctions {check['sanctions']}")
    await agent.note(
        f"Vendor {check['vendor_id']} ({check['vendor_name']}) passed compliance at {check['checked_at']}: "
        f"sanctions {check['sanctions']}, registration {check['registration']} active. "
        f"Quote {quote['quote_id']} may be ordered."
    )
    return 0


def main() -> None:
    args = arguments("Scripted compliance agent of the procurement example.").parse_args()
    run("compliance agent", args, work)


if __name__ == "__main__":
    main()
