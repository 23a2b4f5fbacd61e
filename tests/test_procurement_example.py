"""The procurement example run end to end as a newcomer runs it, then looked at in the console.

The module copies `examples/procurement/` into a temporary folder and runs its `run.py` once,
with `--keep-running`: a real gateway in front of the three demo backends (stdio subprocesses),
and the three scripted agents as processes of their own with their own keys. The tests then read
what it printed and what the ERP kept, call the still-running gateway with the agents' keys,
and browse the console's workflow pages in headless Chromium as the example's `auditor` (role
`viewer`). When the module ends, `run.py` is stopped as Ctrl-C stops it, and its exit status
must say both runs went as expected.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from mcp import MCPError
from playwright.sync_api import Page, expect

from browser import assert_accessible, in_background, sign_in
from harness import free_port, mcp_client, run_cli
from procurement_example import catalog_text, copy_example, listed_catalog
from test_approvals_e2e import text_of

#: How long one whole run of the example may take (three agents, a gateway start, migrations).
RUN_DEADLINE = 180.0
READY_LINE = "The gateway is still running"
ORDERING_REASON = (
    "No purchase order before compliance: compliance__check_vendor must succeed in this workflow "
    "before erp__create_purchase_order."
)


@dataclass
class Run:
    """One `run.py --keep-running` in its own copy of the example, and what it printed."""

    folder: Path
    port: int
    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def keys(self) -> dict[str, str]:
        return dict(json.loads((self.folder / ".state" / "keys.json").read_text()))

    def orders(self) -> list[dict[str, Any]]:
        return list(json.loads((self.folder / ".state" / "erp-orders.json").read_text())["orders"])

    def section(self, number: int) -> str:
        """What run.py printed under `=== <number>. ...` (up to the next section)."""
        parts = re.split(r"^=== (\d)\. ", self.output, flags=re.MULTILINE)
        return dict(zip(parts[1::2], parts[2::2]))[str(number)]

    def workflow(self, suffix: str) -> str:
        found = re.search(rf"workflow (purchase-[0-9a-f]+-{suffix})", self.output)
        assert found, self.output
        return found.group(1)

    def read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            if READY_LINE in line:
                self.ready.set()
        self.ready.set()  # it ended: whoever waits looks at what it printed

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(60)


def run_example(folder: Path, port: int, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(folder / "run.py"), "--port", str(port), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONIOENCODING": "utf-8", "PYTHONUNBUFFERED": "1"},
    )


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    folder = copy_example(tmp_path_factory.mktemp("procurement") / "procurement")
    port = free_port()
    run = Run(folder, port, run_example(folder, port, "--keep-running"))
    threading.Thread(target=run.read, daemon=True).start()
    try:
        assert run.ready.wait(RUN_DEADLINE), f"run.py did not finish its runs in time:\n{run.output}"
        assert run.process.poll() is None, f"run.py ended ({run.process.returncode}):\n{run.output}"
        yield run
    finally:
        status = run.stop()
    assert status == 0, f"run.py found its runs not as expected ({status}):\n{run.output}"


def test_out_of_order_the_purchase_order_is_refused_with_the_reason(example: Run) -> None:
    printed = example.section(1)
    assert "purchasing-agent" in printed
    assert "refused by the gateway" in printed and ORDERING_REASON in printed, printed
    assert "The ERP holds 0 purchase order(s), as before" in printed, printed
    assert "purchase order PO-" not in printed


def test_in_order_each_agent_reads_the_one_before_and_one_order_is_created(example: Run) -> None:
    printed = example.section(2)
    chosen = re.search(r"chose (Q-[0-9A-F]+-V-\d+) from Northwind Supplies", printed)
    assert chosen, printed
    # The compliance agent found the vendor in the workflow's status, and the purchasing agent the quote and note.
    assert f"quotes-agent chose {chosen.group(1)} from vendor V-100" in printed, printed
    assert "note from compliance-agent: Vendor V-100 (Northwind Supplies) passed compliance" in printed, printed
    assert f"chosen quote {chosen.group(1)} (by quotes-agent)" in printed, printed
    assert "compliance pass for V-100 (by compliance-agent)" in printed, printed
    assert re.search(r"purchase order PO-\d{4}-0001: 40 laptop from V-100, 43,240.00 EUR", printed), printed
    [order] = example.orders()  # the ERP ran once, for this workflow only
    assert order["quote_id"] == chosen.group(1) and order["amount"] == "43240.00", order
    assert "Both runs went as expected" in example.output


def test_the_runs_end_with_each_workflows_timeline(example: Run) -> None:
    refused, completed = example.section(1), example.section(2)
    assert "erp__create_purchase_order" in refused.split("timeline")[-1]
    timeline = completed.split("timeline")[-1]
    for tool in ("quotes__choose_quote", "compliance__check_vendor", "erp__create_purchase_order"):
        assert tool in timeline, timeline
    assert timeline.index("quotes__choose_quote") < timeline.index("erp__create_purchase_order")


def test_a_vendor_that_fails_compliance_still_blocks_the_order(example: Run) -> None:
    keys = example.keys()
    workflow = {"io.autonomy-gateway/workflow": "purchase-sanctioned-vendor"}
    order = {"quote_id": "Q-000000-V-300", "vendor_id": "V-300", "item": "laptop", "quantity": 1, "amount": 1173.0}

    async def attempt() -> tuple[str, str]:
        async with mcp_client(f"{example.base_url}/mcp", keys["compliance"]) as compliance:
            checked = await compliance.call_tool("compliance__check_vendor", {"vendor_id": "V-300"}, meta=workflow)
        assert checked.is_error
        async with mcp_client(f"{example.base_url}/mcp", keys["purchasing"]) as purchasing:
            try:
                await purchasing.call_tool("erp__create_purchase_order", order, meta=workflow)
            except MCPError as refused:  # the gateway's JSON-RPC error
                return text_of(checked), refused.message
        raise AssertionError("the purchase order was not refused")

    failed, refused = in_background(attempt).result(60)
    assert "fails compliance: it is on the sanctions list" in failed, failed
    assert ORDERING_REASON in refused, refused
    assert len(example.orders()) == 1


def test_the_policy_cases_pass_against_the_backends_listings(example: Run) -> None:
    policies = example.folder / "policies"
    listed = in_background(lambda: listed_catalog(example.folder)).result(60)
    assert (policies / "tests" / "catalog.json").read_text() == catalog_text(listed), (
        "examples/procurement/policies/tests/catalog.json is not what the backends list: regenerate it"
    )
    done = run_cli("policy", "test", "--dir", str(policies), check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"\b1[0-9] passed, 0 failed", done.stdout), done.stdout


# --- The console's workflow pages --------------------------------------------------------------


def test_the_workflows_list_shows_both_runs_and_filters_by_agent(example: Run, page: Page) -> None:
    sign_in(page, example.base_url, example.keys()["auditor"])
    page.get_by_role("navigation", name="Sections").get_by_role("link", name="Workflows").click()
    expect(page).to_have_url(f"{example.base_url}/ui/workflows")
    expect(page.get_by_role("heading", name="Workflows", exact=True)).to_be_visible()
    in_order, out_of_order = example.workflow("in-order"), example.workflow("out-of-order")
    rows = page.locator("table.workflows tbody tr")
    expect(rows.filter(has_text=in_order)).to_contain_text("compliance-agent, purchasing-agent, quotes-agent")
    expect(rows.filter(has_text=out_of_order)).to_contain_text("purchasing-agent")
    assert_accessible(page)

    page.get_by_label("Agent").fill("compliance-agent")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"/ui/workflows\?agent=compliance-agent$"))
    expect(rows.filter(has_text=in_order)).to_have_count(1)
    expect(rows.filter(has_text=out_of_order)).to_have_count(0)


def test_a_workflows_page_shows_its_timeline_and_links_each_step_to_its_call(example: Run, page: Page) -> None:
    sign_in(page, example.base_url, example.keys()["auditor"])
    workflow = example.workflow("in-order")
    page.goto(f"{example.base_url}/ui/workflows")
    page.get_by_role("link", name=workflow).click()
    expect(page.get_by_role("heading", name=f"Workflow {workflow}")).to_be_visible()
    agents = page.locator("section[aria-labelledby=agents-heading] tbody th")
    expect(agents).to_have_text(["quotes-agent", "compliance-agent", "purchasing-agent"])

    timeline = page.locator("table.timeline tbody tr")
    order = timeline.filter(has_text="erp__create_purchase_order")
    expect(order).to_contain_text("allow")
    expect(order).to_contain_text("ok")
    expect(order.locator("pre.summary")).to_contain_text('"po_number"')
    expect(timeline.filter(has_text="compliance__check_vendor").locator("pre.summary")).to_contain_text('"pass"')
    expect(timeline.filter(has_text="note").filter(has_text="passed compliance")).to_contain_text("compliance-agent")
    tools = [text for text in timeline.locator("td:nth-child(3)").all_inner_texts() if "__" in text]
    assert (
        tools.index("quotes__choose_quote")
        < tools.index("compliance__check_vendor")
        < tools.index("erp__create_purchase_order")
    ), tools
    assert_accessible(page)

    order.get_by_role("link").click()
    expect(page).to_have_url(re.compile(r"/ui/activity/[^/]+$"))
    expect(page.get_by_role("heading", name=re.compile("erp__create_purchase_order"))).to_be_visible()
    page.get_by_role("link", name=workflow).click()  # and back from the call to its workflow
    expect(page.get_by_role("heading", name=f"Workflow {workflow}")).to_be_visible()


def test_a_refused_step_shows_the_reason_and_an_unknown_workflow_is_not_found(example: Run, page: Page) -> None:
    sign_in(page, example.base_url, example.keys()["auditor"])
    page.goto(f"{example.base_url}/ui/workflows/{example.workflow('out-of-order')}")
    refused = page.locator("table.timeline tbody tr").filter(has_text="erp__create_purchase_order")
    expect(refused).to_contain_text("deny")
    expect(refused.locator(".reason")).to_contain_text(ORDERING_REASON)
    assert_accessible(page)

    response = page.goto(f"{example.base_url}/ui/workflows?agent={'a' * 300}")
    assert response is not None and response.status == 400
    expect(page.get_by_role("alert")).to_have_text("An agent name is at most 256 characters: shorten the filter.")

    response = page.goto(f"{example.base_url}/ui/workflows/no-such-workflow")
    assert response is not None and response.status == 404
    expect(page.get_by_text("There is no such workflow.")).to_be_visible()


def test_the_workflow_pages_need_a_signed_in_viewer(example: Run, page: Page) -> None:
    page.goto(f"{example.base_url}/ui/workflows")
    expect(page).to_have_url(f"{example.base_url}/ui/login?next=%2Fui%2Fworkflows")
