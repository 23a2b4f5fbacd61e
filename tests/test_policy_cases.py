"""Policy test cases: run from files, without backends, and report exactly what did not match."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.policy import PolicyEngine
from gateway.policy.cases import catalog_from_definitions, run_cases, run_policy_tests
from policy_world import standard_tools, write_policy


def write_tests(policy_dir: Path, cases: str) -> Path:
    tests = policy_dir / "tests"
    tests.mkdir(parents=True, exist_ok=True)
    (tests / "catalog.json").write_text(
        json.dumps(
            {
                "separator": "__",
                "connectors": {
                    "crm": {"labels": ["customer-data"], "tools": standard_tools()["crm"]},
                    "finance": {
                        "overrides": {"pay_invoice": {"labels": ["payments"]}},
                        "tools": standard_tools()["finance"],
                    },
                },
            }
        )
    )
    (tests / "cases.toml").write_text(cases)
    return tests


POLICIES = """
@id("sales-crm")
permit (principal in Role::"sales", action in Action::"label:customer-data", resource);
permit (principal is Agent, action == Action::"list_tools", resource);
@id("payments-need-finance")
@reason("Only finance pays.")
forbid (principal, action in Action::"label:payments", resource) unless { principal in Role::"finance" };
"""


def test_cases_report_what_did_not_match(tmp_path: Path) -> None:
    write_policy(tmp_path, "main.cedar", POLICIES)
    tests = write_tests(
        tmp_path,
        """
[[case]]
name = "right"
agent = "a"
roles = ["sales"]
tool = "crm__search_customers"
arguments = { query = "x" }
expect = "allow"
policy = "sales-crm"
visible = true

[[case]]
name = "wrong expectation"
agent = "a"
roles = ["sales"]
tool = "finance__pay_invoice"
arguments = { invoice_id = "I", amount = 5.25 }
expect = "allow"

[[case]]
name = "wrong policy and visibility"
agent = "a"
roles = ["sales"]
tool = "crm__update_record"
arguments = { customer_id = "C", field = "f", value = "v" }
expect = "allow"
policy = "someone-else"
visible = false

[[case]]
name = "unknown tool"
agent = "a"
tool = "crm__nothing"
expect = "deny"
""",
    )

    results = run_policy_tests(tmp_path)

    assert [(r.name, r.passed) for r in results] == [
        ("right", True),
        ("wrong expectation", False),
        ("wrong policy and visibility", False),
        ("unknown tool", False),
    ]
    assert results[1].problems == ("decided deny: Only finance pays.",)
    assert "forbid payments-need-finance" in results[1].describe()
    assert results[2].problems == (
        "expected policy 'someone-else' to determine the decision, but it was sales-crm",
        "expected the tool to be hidden in tools/list",
    )
    assert results[3].problems == ("tool 'crm__nothing' is not in catalog.json",)

    # The same cases run against an engine the caller loaded.
    catalog = catalog_from_definitions(tests / "catalog.json")
    engine = PolicyEngine(tmp_path)
    engine.store.load(catalog)
    assert [r.passed for r in run_cases(engine, catalog, tests)] == [True, False, False, False]


@pytest.mark.parametrize(
    ("cases", "problem"),
    [
        ('[[case]]\nagent = "a"\ntool = "crm__search_customers"\n', "key 'expect' is missing"),
        ('[[case]]\nagent = "a"\ntool = "t"\nexpect = "maybe"\n', 'expect must be "allow", "deny" or "hold"'),
        ('[[case]]\nagent = "a"\ntool = "t"\nexpect = "deny"\nprincipal = "x"\n', "unknown key(s) principal"),
        ("[[case]\n", "invalid TOML"),
    ],
)
def test_a_case_file_with_a_mistake_is_refused_naming_the_file(tmp_path: Path, cases: str, problem: str) -> None:
    write_policy(tmp_path, "main.cedar", POLICIES)
    write_tests(tmp_path, cases)

    with pytest.raises(ConfigError, match=r"cases\.toml") as caught:
        run_policy_tests(tmp_path)

    assert problem in str(caught.value)


def test_a_broken_definitions_file_is_refused_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "catalog.json"
    path.write_text('{\n  "connectors": {\n    "crm": [}\n}\n')

    with pytest.raises(ConfigError, match=r"catalog\.json:3: invalid JSON"):
        catalog_from_definitions(path)


def test_cases_and_explain_can_give_the_agent_token_scopes(tmp_path: Path) -> None:
    write_policy(
        tmp_path,
        "main.cedar",
        'permit (principal, action == Action::"crm__search_customers", resource)\n'
        'when { principal.scopes.contains("crm:read") };\n',
    )
    write_tests(
        tmp_path,
        """
[[case]]
name = "scoped"
agent = "a"
scopes = ["crm:read"]
tool = "crm__search_customers"
arguments = { query = "x" }
expect = "allow"

[[case]]
name = "unscoped"
agent = "a"
roles = ["crm:read"]
tool = "crm__search_customers"
arguments = { query = "x" }
expect = "deny"
""",
    )

    assert [(r.name, r.passed, r.problems) for r in run_policy_tests(tmp_path)] == [
        ("scoped", True, ()),
        ("unscoped", True, ()),
    ]

    config = tmp_path / "gateway.toml"
    config.write_text(f'[policies]\ndir = "{tmp_path}"\n[storage]\nurl = "sqlite:///{tmp_path / "gw.db"}"\n')

    def explain(*extra: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "gateway", "policy", "explain", "--config", str(config)]
        command += ["--catalog", str(tmp_path / "tests" / "catalog.json"), "--agent", "a"]
        command += ["--tool", "crm__search_customers", "--args", '{"query": "x"}', *extra]
        return subprocess.run(command, capture_output=True, text=True, timeout=60)

    scoped, unscoped = explain("--scope", "crm:read"), explain()
    assert (scoped.returncode, unscoped.returncode) == (0, 3), (scoped.stderr, unscoped.stderr)
    assert scoped.stdout.startswith("allow") and unscoped.stdout.startswith("deny")


def test_explain_takes_the_workflow_an_ordering_policy_reads(tmp_path: Path) -> None:
    write_policy(
        tmp_path,
        "main.cedar",
        'permit (principal, action == Action::"finance__pay_invoice", resource);\n'
        '@reason("look the customer up first")\n'
        'forbid (principal, action == Action::"finance__pay_invoice", resource)\n'
        'unless { context.workflow.completed.contains("crm__get_customer") };\n'
        '@reason("not while the auditor works the case")\n'
        'forbid (principal, action == Action::"finance__pay_invoice", resource)\n'
        'when { context.workflow.agents.contains("auditor-bot") && context.workflow.id == "case-9" };\n',
    )
    write_tests(tmp_path, "")
    config = tmp_path / "gateway.toml"
    config.write_text(f'[policies]\ndir = "{tmp_path}"\n[storage]\nurl = "sqlite:///{tmp_path / "gw.db"}"\n')

    def explain(*extra: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "gateway", "policy", "explain", "--config", str(config)]
        command += ["--catalog", str(tmp_path / "tests" / "catalog.json"), "--agent", "a"]
        command += ["--tool", "finance__pay_invoice", "--args", '{"invoice_id": "INV-1", "amount": 5}', *extra]
        return subprocess.run(command, capture_output=True, text=True, timeout=60)

    first = explain()
    assert first.returncode == 3 and first.stdout.startswith("deny: look the customer up first"), first.stderr
    ordered = explain("--workflow", "case-1", "--completed", "crm__get_customer")
    assert ordered.returncode == 0 and ordered.stdout.startswith("allow"), ordered.stdout + ordered.stderr
    watched = explain("--workflow", "case-9", "--completed", "crm__get_customer", "--workflow-agent", "auditor-bot")
    assert watched.returncode == 3 and "not while the auditor works the case" in watched.stdout, watched.stdout
