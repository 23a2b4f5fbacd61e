"""The console's Policies section on the real app, in-process, with the quick start's backends and policies.

`create_app` runs whole under Starlette's test client: the quick start's CRM and finance servers
are started as the gateway starts them (stdio subprocesses), the policies are a copy of
`policies/` and people sign in with user keys through the login form, as a browser would.
Explaining is checked against `gateway policy explain` run as a command on the same config.
"""

from __future__ import annotations

import html
import json
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.audit.query import search_events
from gateway.config import load_config
from gateway.console.cedar_html import highlight, tokens
from gateway.console.schema_form import FIELD_PREFIX, WHOLE, argument_form, read_arguments
from gateway.identity.users import UserStore
from gateway.policy.cases import run_policy_tests
from gateway.storage.database import Database
from harness import run_cli, settled_client, write_gateway_config

REPOSITORY = Path(__file__).resolve().parents[1]
QUICKSTART = REPOSITORY / "examples" / "quickstart"
#: A comment that would run a script if the page showed policy text unescaped.
HOSTILE_COMMENT = '// <script>alert("policy text is markup")</script>'
#: A case the quick start's policies fail: the page must show it failed, with what was expected.
FAILING_CASE = """
[[case]]
name = "a sales agent pays (a wrong expectation)"
agent = "sales-assistant"
roles = ["sales"]
tool = "finance__pay_invoice"
arguments = { invoice_id = "INV-2001", amount = 5 }
expect = "allow"
"""


@dataclass
class Console:
    client: TestClient
    config: Path
    directory: Path
    keys: dict[str, str]

    @property
    def database_url(self) -> str:
        return f"sqlite+aiosqlite:///{self.directory / 'gateway.db'}"

    def sign_in(self, user: str) -> str:
        """Sign in as `user` through the login form (its CSRF cookie and field); returns the session's CSRF token."""
        self.client.cookies.clear()
        form = self.client.get("/ui/login")
        token = _match(r'name="csrf" value="([^"]+)"', form.text)
        signed = self.client.post(
            "/ui/login", data={"csrf": token, "key": self.keys[user], "next": "/ui/"}, follow_redirects=False
        )
        assert signed.status_code == 303, signed.text
        return _match(r'data-csrf="([^"]+)"', self.client.get("/ui/").text)

    def console_events(self) -> list[dict[str, Any]]:
        async def read() -> list[dict[str, Any]]:
            database = Database(self.database_url)
            try:
                return [event.data for event in (await search_events(database, "console")).events]
            finally:
                await database.close()

        return anyio.run(read)


def _match(pattern: str, text: str) -> str:
    """The first group of `pattern` in `text` (`.` matches line breaks too), unescaped as a browser would."""
    found = re.search(pattern, text, re.S)
    assert found is not None, f"{pattern!r} not in:\n{text[:3000]}"
    return html.unescape(found.group(1))


def quickstart_connectors() -> dict[str, str]:
    """The quick start's connector files, run from the quick start's directory wherever the config is."""
    bodies = {}
    for path in sorted((QUICKSTART / "connectors").glob("*.toml")):
        body = path.read_text()
        assert 'cwd = ".."' in body
        bodies[path.stem] = body.replace('cwd = ".."', f'cwd = "{QUICKSTART}"')
    return bodies


@contextmanager
def running_console(directory: Path) -> Iterator[Console]:
    """The app on a copy of the quick start's policies (plus a hostile comment and a failing case).

    The policy watcher looks only once an hour, so every reload in these tests is the console's.
    """
    shutil.copytree(REPOSITORY / "policies", directory / "policies")
    access = directory / "policies" / "access" / "quickstart.cedar"
    access.write_text(access.read_text() + "\n" + HOSTILE_COMMENT + "\n")
    (directory / "policies" / "tests" / "console.toml").write_text(FAILING_CASE)
    config = write_gateway_config(directory, quickstart_connectors(), policies={}, extra="reload_interval = 3600")
    app = create_app(load_config(config))
    with settled_client(app, base_url="http://127.0.0.1") as client:
        console = Console(client, config, directory, {})

        async def create_users() -> None:
            database = Database(console.database_url)
            try:
                users = UserStore(database)
                for name, roles in (("ada", ["admin"]), ("vic", ["viewer"])):
                    console.keys[name] = (await users.create(name, roles=roles))[1]
            finally:
                await database.close()

        anyio.run(create_users)
        yield console


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    with running_console(tmp_path_factory.mktemp("console-policies")) as console:
        yield console


# -- the files and their status ------------------------------------------------------------------


def test_the_files_in_force_show_numbered_highlighted_escaped_lines_with_an_anchor_per_policy(
    console: Console,
) -> None:
    console.sign_in("vic")
    page = console.client.get("/ui/policies")

    assert page.status_code == 200
    text = page.text
    access = (console.directory / "policies" / "access" / "quickstart.cedar").read_text()
    approval = (console.directory / "policies" / "approval" / "quickstart.cedar").read_text()
    numbers = [int(n) for n in re.findall(r'<th scope="row" class="ln">(\d+)</th>', text)]
    assert numbers == [*range(1, len(access.splitlines()) + 1), *range(1, len(approval.splitlines()) + 1)]
    assert '<h3 id="file-1">access/quickstart.cedar' in text and "approval/quickstart.cedar" in text
    # Every policy of both files has its anchor on the line it starts, and the index links to it.
    for policy_id in ("only-finance-pays", "sales-read-crm", "large-payments-need-a-manager"):
        assert f'<span class="anchor" id="policy-{policy_id}"></span>' in text
        assert f'href="#policy-{policy_id}"' in text
    line = access.splitlines().index('@id("only-finance-pays")') + 1
    assert re.search(rf'class="ln">{line}</th><td><code><span class="anchor" id="policy-only-finance-pays">', text)
    assert '<span class="tok-keyword">forbid</span>' in text
    assert '<span class="tok-type">Role</span>::<span class="tok-string">&#34;finance&#34;</span>' in text
    # The comment is shown as the text it is, never as markup.
    assert "<script>alert" not in text
    escaped = "// &lt;script&gt;alert(&#34;policy text is markup&#34;)&lt;/script&gt;"
    assert f'<span class="tok-comment">{escaped}</span>' in text
    assert "<dt>Access policies</dt><dd>12</dd>" in text and "<dt>Approval policies</dt><dd>1</dd>" in text
    assert "The last load of the policy files failed" not in text
    assert "Reload now" not in text  # a viewer is told reloading needs admin instead
    assert "needs the console permission <strong>admin</strong>" in text


def test_a_viewer_cannot_reload_and_an_admins_reload_is_audited(console: Console) -> None:
    csrf = console.sign_in("vic")
    refused = console.client.post("/ui/policies/reload", data={"csrf": csrf}, follow_redirects=False)
    assert refused.status_code == 403
    assert "admin" in refused.text

    csrf = console.sign_in("ada")
    assert "Reload now" in console.client.get("/ui/policies").text
    reloaded = console.client.post("/ui/policies/reload", data={"csrf": csrf}, follow_redirects=False)
    assert (reloaded.status_code, reloaded.headers["location"]) == (303, "/ui/policies?reload=loaded")
    page = console.client.get(reloaded.headers["location"]).text
    assert "Reloaded: 12 access and 1 approval policies are in force." in page

    reloads = [event for event in console.console_events() if event["action"] == "policies_reloaded"]
    assert [(event["user"], event["details"]) for event in reloads] == [
        ("ada", {"outcome": "loaded", "policies": 12, "approval_policies": 1, "in_force": True, "error": None})
    ]


def test_a_bad_edit_is_shown_with_its_error_and_the_set_in_force_still_decides(tmp_path: Path) -> None:
    with running_console(tmp_path) as console:
        csrf = console.sign_in("ada")
        access = tmp_path / "policies" / "access" / "quickstart.cedar"
        # Would let every agent do anything, had it loaded; the missing `;` keeps it from loading.
        access.write_text('@id("everything")\npermit (principal, action, resource)\n')

        reloaded = console.client.post("/ui/policies/reload", data={"csrf": csrf}, follow_redirects=False)
        assert reloaded.headers["location"] == "/ui/policies?reload=failed"
        page = console.client.get(reloaded.headers["location"]).text
        assert "The reload failed" in page
        assert "The last load of the policy files failed" in page and "stays in force" in page
        error = _match(r'<section class="policy-load-error".*?<pre class="json"[^>]*>(.*?)</pre>', page)
        assert f"{access}:1: syntax error: unexpected end of input" in error
        # The page shows the set in force, not the broken file.
        assert 'id="policy-only-finance-pays"' in page and 'id="policy-everything"' not in page

        explained = explain(console, csrf, "sales-assistant", "sales", "finance__pay_invoice", invoice_id="INV-1")
        assert _match(r'data-outcome="(\w+)"', explained) == "deny"
        assert 'href="/ui/policies#policy-only-finance-pays"' in explained

        (event,) = [e for e in console.console_events() if e["action"] == "policies_reloaded"]
        assert event["details"]["outcome"] == "failed" and event["details"]["in_force"] is True
        assert f"{access}:1: syntax error" in event["details"]["error"]


# -- explain ----------------------------------------------------------------------------------------


def explain(console: Console, csrf: str, agent: str, roles: str, tool: str, **arguments: str) -> str:
    form = {"csrf": csrf, "agent": agent, "roles": roles, "tool": tool, "shown_tool": tool, "action": "explain"}
    form.update({FIELD_PREFIX + name: value for name, value in arguments.items()})
    answer = console.client.post("/ui/policies/explain", data=form)
    assert answer.status_code == 200, answer.text
    return answer.text


PAYMENT = {"invoice_id": "INV-2001", "amount": "1200.50"}


@pytest.mark.parametrize(
    ("agent", "role", "tool", "arguments", "outcome"),
    [
        ("sales-assistant", "sales", "crm__search_customers", {"query": "acme", "limit": "5"}, "allow"),
        ("sales-assistant", "sales", "finance__pay_invoice", PAYMENT, "deny"),
        ("finance-assistant", "finance", "finance__pay_invoice", PAYMENT, "hold"),
    ],
)
def test_explain_decides_what_gateway_policy_explain_decides(
    console: Console, agent: str, role: str, tool: str, arguments: dict[str, str], outcome: str
) -> None:
    csrf = console.sign_in("vic")
    page = explain(console, csrf, agent, role, tool, **arguments)
    typed = {name: json.loads(value) if name in ("limit", "amount") else value for name, value in arguments.items()}
    command = ["policy", "explain", "--config", str(console.config), "--agent", agent, "--role", role]
    cli = run_cli(*command, "--tool", tool, "--args", json.dumps(typed), check=False)

    assert cli.returncode == (3 if outcome == "deny" else 0), cli.stderr
    assert _match(r'data-outcome="(\w+)"', page) == outcome
    assert _match(r'<pre class="json"[^>]*id="explain-text">(.*?)</pre>', page) == cli.stdout.rstrip("\n")
    assert cli.stdout.startswith("deny" if outcome == "deny" else "allow")
    if outcome == "hold":
        assert "<dt>Approvers</dt><dd>role:finance-managers</dd>" in page
        assert "<dt>Quorum</dt><dd>1 distinct person</dd>" in page
        assert "<dt>Expires</dt><dd>1:00:00 after the call is held</dd>" in page
        assert 'href="/ui/policies#policy-large-payments-need-a-manager"' in page
    if outcome == "deny":
        assert 'href="/ui/policies#policy-only-finance-pays"' in page
        assert "Only finance agents may pay invoices." in page


def test_the_arguments_form_is_made_from_the_tools_input_schema(console: Console) -> None:
    csrf = console.sign_in("vic")
    page = console.client.get("/ui/policies/explain", params={"tool": "finance__pay_invoice"}).text
    assert '<option value="finance__pay_invoice" selected>' in page
    assert re.search(r'<label for="arg-1"><code>invoice_id</code> <span class="required">\(required\)</span>', page)
    assert re.search(r'<label for="arg-2"><code>amount</code> <span class="required">\(required\)</span>', page)
    assert 'name="arg:amount" type="text" value="" spellcheck="false" inputmode="decimal"' in page
    assert "Amount to pay; must equal the full outstanding amount." in page
    assert 'class="show-arguments"' in page  # without JavaScript, the button shows another tool's arguments

    # What the script fetches when another tool is chosen: only that tool's fields.
    fragment = console.client.get(
        "/ui/policies/explain", params={"tool": "crm__search_customers"}, headers={"X-Requested-With": "console"}
    )
    assert fragment.status_code == 200 and "<html" not in fragment.text
    assert '<input type="hidden" name="shown_tool" value="crm__search_customers">' in fragment.text
    assert '<code>query</code> <span class="required">(required)</span> <span class="help">string' in fragment.text
    assert '<code>limit</code> <span class="help">integer</span>' in fragment.text
    assert "Default when left out: <code>10</code>." in fragment.text
    optional = console.client.get(
        "/ui/policies/explain", params={"tool": "finance__list_invoices"}, headers={"X-Requested-With": "console"}
    ).text
    assert '<code>status</code> <span class="help">string</span>' in optional  # anyOf string/null

    # Without JavaScript: the button re-renders the form for the tool chosen, keeping who calls.
    shown = console.client.post(
        "/ui/policies/explain",
        data={"csrf": csrf, "agent": "a", "roles": "sales", "tool": "crm__get_customer", "shown_tool": "x"},
    ).text
    assert 'name="arg:customer_id"' in shown and 'name="arg:amount"' not in shown
    assert 'id="agent" name="agent" type="text" value="a"' in shown
    assert "The tool changed: these are the arguments of crm__get_customer." in shown
    assert "data-outcome" not in shown  # another tool's fields are never explained as this one's


def test_a_form_that_cannot_be_explained_says_why(console: Console) -> None:
    csrf = console.sign_in("vic")
    form = {"csrf": csrf, "agent": "", "tool": "crm__search_customers", "shown_tool": "crm__search_customers"}
    refused = console.client.post("/ui/policies/explain", data={**form, "arg:limit": "five"})
    assert refused.status_code == 400
    assert "Name the agent that calls the tool." in refused.text
    assert "limit: not a number: &#39;five&#39;" in refused.text


def test_the_schema_form_reads_each_kind_of_property_back_as_json() -> None:
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "description": "Who"},
            "count": {"type": "integer", "default": 3},
            "ratio": {"type": ["number", "null"]},
            "urgent": {"type": "boolean"},
            "tier": {"enum": ["gold", "silver", 3]},
            "filter": {"type": "object", "properties": {"a": {"type": "string"}}},
            "tags": {"type": "array", "items": {"type": "string"}},
            "either": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
        },
        "required": ["name"],
    }
    blank = argument_form(schema)
    assert [(f.name, f.kind, f.required) for f in blank.fields] == [
        ("name", "string", True),
        ("count", "integer", False),
        ("ratio", "number", False),
        ("urgent", "boolean", False),
        ("tier", "enum", False),
        ("filter", "json", False),
        ("tags", "json", False),
        ("either", "json", False),
    ]
    assert blank.fields[0].help == "Who" and blank.fields[1].default == "3"
    assert blank.fields[4].choices == ("gold", "silver", "3")
    assert read_arguments(blank) == ({}, [])

    filled = argument_form(
        schema,
        {
            "arg:name": "Ada",
            "arg:count": "1000",
            "arg:ratio": "0.5",
            "arg:urgent": "false",
            "arg:tier": "3",
            "arg:filter": '{"a": "b"}',
            "arg:tags": '["x"]',
        },
    )
    assert read_arguments(filled) == (
        {"name": "Ada", "count": 1000, "ratio": 0.5, "urgent": False, "tier": 3, "filter": {"a": "b"}, "tags": ["x"]},
        [],
    )
    wrong = argument_form(
        schema, {"arg:count": "1.5", "arg:ratio": "NaN", "arg:urgent": "yes", "arg:tier": "bronze", "arg:tags": "[x"}
    )
    arguments, errors = read_arguments(wrong)
    assert arguments == {}
    assert [error.split(":")[0] for error in errors] == ["count", "ratio", "urgent", "tier", "tags"]

    whole = argument_form({"type": "object"}, {WHOLE: '{"anything": [1, 2]}'})
    assert whole.whole and read_arguments(whole) == ({"anything": [1, 2]}, [])


# -- the policy tests -------------------------------------------------------------------------------


def test_a_viewer_runs_the_policy_tests_and_sees_expected_against_got(console: Console) -> None:
    csrf = console.sign_in("vic")
    before = console.client.get("/ui/policies/tests").text
    assert "Run the policy tests" in before and "Results" not in before

    page = console.client.post("/ui/policies/tests", data={"csrf": csrf})

    assert page.status_code == 200
    results = run_policy_tests(console.directory / "policies")
    failed = [r for r in results if not r.passed]
    assert [r.name for r in failed] == ["a sales agent pays (a wrong expectation)"]
    assert f"{len(results) - 1} passed, 1 failed" in page.text
    rows = re.findall(r"<tr>\s*<td><span class=\"state (ok|failed)\">.*?</tr>", page.text, re.S)
    assert len(rows) == len(results) and rows.count("failed") == 1
    row = _match(r"(<tr>\s*<td><span class=\"state failed\">.*?</tr>)", page.text)
    assert "a sales agent pays (a wrong expectation)" in row
    assert re.search(r'<span class="state allow">allow</span></td>\s*<td><span class="state deny">deny</span>', row)
    assert "decided deny: Only finance agents may pay invoices." in row


# -- highlighting -----------------------------------------------------------------------------------


def test_highlighting_keeps_every_character_and_escapes_it() -> None:
    text = (
        '@id("x") // note </code>\npermit (principal is Agent, action in [Action::"a"], resource)\n'
        'when { context.input.n.lessThan(decimal("1.5")) && "unterminated \\" <b>\n'
    )
    assert "".join(piece for _, piece in tokens(text)) == text
    lines = highlight(text)
    assert len(lines) == 3
    assert lines[0] == (
        '<span class="tok-annotation">@id</span>(<span class="tok-string">&#34;x&#34;</span>) '
        '<span class="tok-comment">// note &lt;/code&gt;</span>'
    )
    assert '<span class="tok-keyword">is</span> <span class="tok-type">Agent</span>' in lines[1]
    assert '<span class="tok-function">lessThan</span>' in lines[2]
    assert lines[2].endswith('<span class="tok-string">&#34;unterminated \\&#34; &lt;b&gt;</span>')
