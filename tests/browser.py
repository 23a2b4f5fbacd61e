"""Real-browser tests of the web console: headless Chromium driven by Playwright, checked with axe-core.

The browser is Debian's `chromium` (`/usr/bin/chromium`; `GATEWAY_TEST_CHROMIUM` names another
binary): Playwright drives it through `executable_path` and never downloads a browser of its own.
Without it, every test that needs the browser fails, saying how to install it; none is skipped.

Fixtures (registered for every test module by `conftest.py`):

- `browser`: one Chromium per test module. Not one per session: while Playwright's sync API
  runs, the main thread counts as running an asyncio loop, so every `anyio` test of a later
  module would fail ("Cannot run the event loop while another loop is running"). For the same
  reason a browser test is a plain (sync) test; it runs an agent's async calls with
  `in_background(...)`, on a thread of its own.
- `page`: a fresh browser context (no cookies) and its page, for one test.
- `new_page(**options)`: more pages in contexts of their own, with Playwright's context options
  (`java_script_enabled=False`, `viewport={...}`); closed after the test.

Helpers: `sign_in(page, base_url, key)`, `assert_accessible(page)` (axe-core: fails on any
serious or critical violation, listed readably), `save_screenshot(page, path)`.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import anyio
import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, Page, expect, sync_playwright

#: Names another Chromium binary than Debian's.
CHROMIUM_ENV = "GATEWAY_TEST_CHROMIUM"
DEBIAN_CHROMIUM = "/usr/bin/chromium"
#: `SAVE_SCREENSHOTS=1` lets the tests that take the README's screenshots write them into docs/.
SCREENSHOTS_ENV = "SAVE_SCREENSHOTS"
#: The axe-core impacts that fail a page: a person using a screen reader or a keyboard is blocked.
FAILING_IMPACTS = ("serious", "critical")
#: How long `expect(...)` waits for what a person would see (a live update, a redirect).
EXPECT_TIMEOUT_MS = 10_000

T = TypeVar("T")

expect.set_options(timeout=EXPECT_TIMEOUT_MS)


def chromium_path() -> str:
    """The Chromium binary to drive; fails the test, saying how to install it, when there is none."""
    wanted = os.environ.get(CHROMIUM_ENV)
    found = wanted or (DEBIAN_CHROMIUM if os.access(DEBIAN_CHROMIUM, os.X_OK) else shutil.which("chromium"))
    if found and os.access(found, os.X_OK):
        return found
    pytest.fail(
        f"No Chromium to drive the console's browser tests ({wanted or DEBIAN_CHROMIUM} is not an executable). "
        "Install Debian's: `apt-get update && apt-get install -y chromium` (.ci/run does), or point "
        f"{CHROMIUM_ENV} at a Chromium binary. These tests never download a browser.",
        pytrace=False,
    )


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Chromium for one test module (see the module's docstring for why not one per session)."""
    executable = chromium_path()
    # Chromium refuses to start its sandbox as root (CI runs as root); elsewhere it keeps it.
    args = ["--no-sandbox"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=args, headless=True)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def new_page(browser: Browser) -> Iterator[Callable[..., Page]]:
    """Opens a page in a new context of its own (`**options` are Playwright's context options)."""
    contexts = []

    def opened(**options: Any) -> Page:
        context = browser.new_context(**options)
        context.set_default_timeout(EXPECT_TIMEOUT_MS)
        contexts.append(context)
        return context.new_page()

    try:
        yield opened
    finally:
        for context in contexts:
            context.close()


@pytest.fixture
def page(new_page: Callable[..., Page]) -> Page:
    """A page in a fresh context: nobody is signed in."""
    return new_page()


def sign_in(page: Page, base_url: str, key: str) -> None:
    """Sign in to the console at `base_url` with a user key, as a person does, and land on the overview."""
    page.goto(f"{base_url}/ui/login")
    page.fill("#key", key)
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{base_url}/ui/")
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


def assert_accessible(page: Page, *, impacts: tuple[str, ...] = FAILING_IMPACTS) -> None:
    """Run axe-core on the page as it is now; fail listing every violation of one of `impacts`."""
    results = Axe().run(page)
    failing = [v for v in results.response["violations"] if v.get("impact") in impacts]
    if failing:
        pytest.fail(f"{page.url} has accessibility violations:\n" + describe_violations(failing), pytrace=False)


def describe_violations(violations: list[dict[str, Any]]) -> str:
    """axe-core's violations as a person reads them: the rule, its impact, what to fix, and where."""
    lines = []
    for violation in violations:
        lines.append(f"- {violation['id']} ({violation['impact']}): {violation['help']} <{violation['helpUrl']}>")
        for node in violation["nodes"]:
            summary = node.get("failureSummary") or ""
            lines.append(f"    at {', '.join(map(str, node['target']))}: {_one_line(node.get('html', ''))}")
            for detail in summary.splitlines():
                if detail.strip():
                    lines.append(f"      {detail.strip()}")
    return "\n".join(lines)


def _one_line(html: str, limit: int = 160) -> str:
    flat = re.sub(r"\s+", " ", html).strip()
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def screenshots_wanted() -> bool:
    """Whether this run should write the documentation's screenshots (`SAVE_SCREENSHOTS=1`)."""
    return os.environ.get(SCREENSHOTS_ENV, "") not in ("", "0")


def save_screenshot(page: Page, path: Path, *, full_page: bool = False) -> Path:
    """A PNG of what the page shows now, written to `path` (its folder is made if missing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=full_page, animations="disabled", caret="hide")
    return path


def in_background(work: Callable[[], Awaitable[T]]) -> Future[T]:
    """Run async `work` (an agent's call) on an event loop in a thread of its own, while the test
    drives the browser; `.result(timeout)` waits for what it returned."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="agent")
    try:
        return pool.submit(anyio.run, work)
    finally:
        pool.shutdown(wait=False)
