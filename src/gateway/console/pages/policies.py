"""Policies: the files in force and their load status, a reload, explaining one call, and the policy tests.

- `/ui/policies` shows the access and approval files of the set in force, highlighted, with line
  numbers and an anchor per policy (`#policy-<id>`), and the load status; a failed reload is shown
  first, with the set that stays in force. Admins may reload now (a console audit event).
- `/ui/policies/explain` asks what `gateway policy explain` asks, through `explain_call`, so the
  page and the CLI give the same answer; the arguments form comes from the tool's input schema.
- `/ui/policies/tests` runs `policies/tests` as `gateway policy test` and CI do (`run_policy_tests`:
  the files on disk against `tests/catalog.json`), not against the running set and live catalog:
  its results then mean what they mean in CI, do not change when a backend is down, and leave the
  running engine alone. It only reads, so a viewer may run it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from gateway.catalog.entries import ToolEntry
from gateway.console.access import Permission, Visitor
from gateway.console.guard import Guard
from gateway.console.policy_view import (
    cli_command,
    form_text,
    shown_explanation,
    shown_files,
    split_names,
)
from gateway.console.rendering import render
from gateway.console.schema_form import ArgumentForm, argument_form, read_arguments
from gateway.console.services import ConsoleServices
from gateway.errors import GatewayError, PolicyLoadError
from gateway.identity.principal import Principal
from gateway.policy.cases import run_policy_tests
from gateway.policy.explain import explain_call

#: The most characters of a load error kept in the audit event of a reload (the log has it whole).
AUDITED_ERROR_CHARS = 4000


def routes(services: ConsoleServices, guard: Guard) -> list[BaseRoute]:
    policy_dir = Path(services.runtime.config.gateway.policies.dir)
    # One run of the policy tests at a time: each loads every file, and a held-down button must not queue many.
    tests_running = anyio.CapacityLimiter(1)

    async def overview(request: Request, visitor: Visitor) -> Response:
        store = services.policy.store
        status = store.status
        error: str | None = None
        try:
            files, in_force = shown_files(store, policy_dir)
        except PolicyLoadError as exc:
            files, in_force, error = [], False, f"The policy files cannot be read: {exc}"
        context = {
            "status": status,
            "files": files,
            "in_force": in_force,
            "files_error": error,
            "directory": str(policy_dir),
            "reload_interval": services.runtime.config.gateway.policies.reload_interval,
            "reloaded": request.query_params.get("reload"),
        }
        return render(request, "policies.html", context, visitor=visitor, section="policies")

    async def reload(request: Request, visitor: Visitor) -> Response:
        loaded = await services.runtime.reload_policies()
        status = services.policy.store.status
        error = None if loaded else (status.last_error or "the policies did not load")
        await services.audit.record_console_event(
            "policies_reloaded",
            user=visitor.user.name,
            via=visitor.session.via,
            client_address=request.client.host if request.client else None,
            details={
                "outcome": "loaded" if loaded else "failed",
                "policies": status.policy_count,
                "approval_policies": status.approval_count,
                "in_force": status.loaded,
                "error": error[:AUDITED_ERROR_CHARS] if error else None,
            },
        )
        return RedirectResponse(f"/ui/policies?reload={'loaded' if loaded else 'failed'}", status_code=303)

    def tools() -> dict[str, ToolEntry]:
        return {entry.exposed: entry for entry in sorted(services.catalog.tools(), key=lambda e: e.exposed)}

    async def explain_form(request: Request, visitor: Visitor) -> Response:
        offered = tools()
        chosen = request.query_params.get("tool") or next(iter(offered), "")
        if request.headers.get("x-requested-with") == "console":
            # The script asks for the arguments of the tool just chosen.
            if chosen not in offered:
                return PlainTextResponse(f"There is no tool named {chosen!r}.", status_code=404)
            form = argument_form(offered[chosen].backend_input_schema)
            context = {"arguments": form, "shown_tool": chosen}
            return render(request, "policy_arguments.html", context, visitor=visitor)
        entry = offered.get(chosen)
        fields = {"agent": "", "roles": "", "scopes": "", "user": "", "reasoning": ""}
        context = _explain_context(offered, entry, fields, argument_form(entry.backend_input_schema if entry else None))
        return render(request, "policy_explain.html", context, visitor=visitor, section="policies")

    async def explain(request: Request, visitor: Visitor) -> Response:
        form = await request.form()
        offered = tools()
        fields = {name: form_text(form, name) for name in ("agent", "roles", "scopes", "user", "reasoning")}
        entry = offered.get(form_text(form, "tool"))
        # The argument fields on the page belong to `shown_tool`; another tool's values are never sent as this one's.
        same_tool = entry is not None and form_text(form, "shown_tool") == entry.exposed
        submitted = {key: value for key, value in form.multi_items() if isinstance(value, str)} if same_tool else {}
        arguments_form = argument_form(entry.backend_input_schema if entry else None, submitted)
        context = _explain_context(offered, entry, fields, arguments_form)
        if entry is not None and (form_text(form, "action") == "arguments" or not same_tool):
            # The "Show the arguments" button (pages without JavaScript), or a tool changed without it.
            if form_text(form, "action") != "arguments":
                context["notice"] = (
                    f"The tool changed: these are the arguments of {entry.exposed}. Fill them in, then explain."
                )
            return render(request, "policy_explain.html", context, visitor=visitor, section="policies")
        arguments, errors = read_arguments(arguments_form)
        if entry is None:
            errors.insert(0, "Choose a tool the gateway offers.")
        if not fields["agent"].strip():
            errors.insert(0, "Name the agent that calls the tool.")
        if errors or entry is None:
            context["errors"] = errors
            return render(request, "policy_explain.html", context, visitor=visitor, section="policies", status_code=400)
        principal = Principal(
            agent=fields["agent"].strip(),
            roles=split_names(fields["roles"]),
            scopes=split_names(fields["scopes"]),
            user=fields["user"].strip() or None,
            auth_method="explain",
        )
        reasoning = fields["reasoning"].strip() or None
        explanation = explain_call(services.policy, entry, principal, arguments, reasoning=reasoning)
        context["result"] = shown_explanation(explanation)
        context["command"] = cli_command(principal, entry.exposed, arguments, reasoning)
        context["loaded_at"] = services.policy.store.status.loaded_at
        return render(request, "policy_explain.html", context, visitor=visitor, section="policies")

    async def tests_page(request: Request, visitor: Visitor) -> Response:
        context = {"ran": False, "directory": str(policy_dir / "tests")}
        return render(request, "policy_tests.html", context, visitor=visitor, section="policies")

    async def run_tests(request: Request, visitor: Visitor) -> Response:
        context: dict[str, Any] = {"ran": True, "directory": str(policy_dir / "tests"), "results": []}
        if not (policy_dir / "tests").is_dir():
            context["error"] = f"There are no policy tests: {policy_dir / 'tests'} does not exist."
        else:
            try:
                results = await anyio.to_thread.run_sync(run_policy_tests, policy_dir, limiter=tests_running)
            except GatewayError as exc:  # the files do not load, or a case file is wrong: nothing ran
                context["error"] = str(exc)
            else:
                context["results"] = results
                context["failed"] = sum(not result.passed for result in results)
        return render(request, "policy_tests.html", context, visitor=visitor, section="policies")

    return [
        Route("/policies", guard.page(Permission.VIEWER, overview), methods=["GET"]),
        Route("/policies/reload", guard.page(Permission.ADMIN, reload), methods=["POST"]),
        Route("/policies/explain", guard.page(Permission.VIEWER, explain_form), methods=["GET"]),
        Route("/policies/explain", guard.page(Permission.VIEWER, explain), methods=["POST"]),
        Route("/policies/tests", guard.page(Permission.VIEWER, tests_page), methods=["GET"]),
        Route("/policies/tests", guard.page(Permission.VIEWER, run_tests), methods=["POST"]),
    ]


def _explain_context(
    offered: dict[str, ToolEntry], entry: ToolEntry | None, fields: dict[str, str], arguments: ArgumentForm
) -> dict[str, Any]:
    return {
        "tools": list(offered),
        "tool": entry.exposed if entry else "",
        "fields": fields,
        "arguments": arguments,
        "errors": [],
        "result": None,
        "notice": None,
    }
