"""`gateway approvals list|show|approve|deny|cancel|answer`: people deciding held calls and answering agents.

Deciding is done as a person: `--user-key` (or `$GATEWAY_USER_KEY`, which keeps the key out of
shell history) names the user, whose name and roles the approval store checks against the
approvers, the quorum and the separation of duties. `--admin REASON` lets an operator decide
without being an approver, for when none can be reached; the store records it as an override
in the audit log, so it never passes unnoticed.

A deciding command writes its audit events on a chain of its own (a fresh replica id and lease,
closed cleanly before the command exits), as a short-lived gateway process would: the serving
gateway's chain belongs to the serving gateway. On PostgreSQL it then signals the change
(`approval_changed`, as the gateway does), so a call waiting on the approval in any gateway
process goes on at once; on SQLite signals cannot leave a process, and the waiting gateway finds
the decision at its next look (`[approvals] poll_interval`).

Nothing here opens sealed arguments: people see the redacted ones, and only the gateway that
runs an approved call opens the exact ones.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio

from gateway.cli.command_audit import command_audit
from gateway.cli.config_option import add_config_argument, load
from gateway.cli.output import print_table

if TYPE_CHECKING:
    from gateway.approvals import Approval, ApprovalStore, Sealer, Vote
    from gateway.approvals.wakeups import ApprovalWakeups
    from gateway.config import Config
    from gateway.identity.users import User, UserStore
    from gateway.signals import Signals

USER_KEY_ENV = "GATEWAY_USER_KEY"
#: Who the audit log names for a decision taken with `--admin`.
ADMIN_ACTOR = "admin"
#: Longest string shown whole in `show`; longer ones are cut, saying how much was left out.
FOLD_CHARS = 200
#: Most items of one list shown in `show`.
FOLD_ITEMS = 50
_STATES = (
    "pending",
    "approved",
    "executing",
    "succeeded",
    "failed",
    "unknown",
    "denied",
    "expired",
    "cancelled",
    "answered",
)


def build(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(title="approvals", metavar="ACTION")
    listing = actions.add_parser("list", help="list held calls, newest first")
    add_config_argument(listing)
    listing.add_argument("--state", choices=_STATES, help="only approvals in this state")
    listing.add_argument("--limit", type=int, default=50, help="how many to list (default: 50, at most 500)")
    listing.add_argument("--cursor", help="continue a listing where the previous one stopped")
    listing.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    listing.set_defaults(run=_list)
    show = actions.add_parser("show", help="everything an approver needs to decide one held call")
    add_config_argument(show)
    show.add_argument("approval_id", help="the approval's id, as shown by 'gateway approvals list'")
    show.add_argument("--json", action="store_true", help="print JSON instead of text")
    show.set_defaults(run=_show)
    for name, summary, comment_required, run in (
        ("approve", "approve a held call as a user (or as the admin, with --admin)", False, _approve),
        ("deny", "deny a held call as a user (or as the admin, with --admin)", True, _deny),
        ("cancel", "withdraw a held call (its user, an approver, or the admin)", True, _cancel),
    ):
        action = actions.add_parser(name, help=summary)
        add_config_argument(action)
        action.add_argument("approval_id", help="the approval's id")
        action.add_argument("--comment", required=comment_required, help="why; kept with the decision in the audit log")
        action.add_argument(
            "--user-key", help=f"the deciding person's user key (default: ${USER_KEY_ENV}, which stays out of history)"
        )
        action.add_argument(
            "--admin",
            metavar="REASON",
            help="decide as the admin without a user key; recorded in the audit log as an override, with REASON",
        )
        action.set_defaults(run=run)
    answer = actions.add_parser("answer", help="answer a question an agent asked (gateway__ask_human) as a user")
    add_config_argument(answer)
    answer.add_argument("approval_id", help="the question's id, as shown by 'gateway approvals list'")
    chosen = answer.add_mutually_exclusive_group(required=True)
    chosen.add_argument("--option", help="the option chosen, exactly as the question lists it")
    chosen.add_argument("--text", help="the answer in words, for a question without options")
    answer.add_argument("--note", help="with --option: a few words the agent reads beside the option chosen")
    answer.add_argument(
        "--user-key", help=f"the answering person's user key (default: ${USER_KEY_ENV}, which stays out of history)"
    )
    answer.set_defaults(run=_answer)


# -- reading -----------------------------------------------------------------------------------


def _list(args: argparse.Namespace) -> int:
    async def show(store: ApprovalStore, users: UserStore) -> int:
        from gateway.approvals import ApprovalState

        state = ApprovalState(args.state) if args.state is not None else None
        page = await store.list(state=state, limit=args.limit, cursor=args.cursor)
        now = datetime.now(UTC)
        counted = [(approval, await store.votes(approval.id)) for approval in page.approvals]
        if args.json:
            for approval, votes in counted:
                print(json.dumps(_summary_json(approval, votes, now)))
        else:
            rows = [
                (
                    a.id,
                    a.state,
                    a.agent,
                    a.user or "-",
                    a.tool,
                    f"{_approving(votes)}/{a.quorum}",
                    _when(a.created_at),
                    _left(a, now),
                )
                for a, votes in counted
            ]
            print_table(("ID", "STATE", "AGENT", "USER", "TOOL", "VOTES", "CREATED", "EXPIRES"), rows)
        if page.next_cursor is not None:
            print(f"gateway: more approvals: add --cursor {page.next_cursor}", file=sys.stderr)
        return 0

    return _run(args, show)


def _show(args: argparse.Namespace) -> int:
    async def show(store: ApprovalStore, users: UserStore) -> int:
        approval = await store.get(args.approval_id)
        votes = await store.votes(approval.id)
        now = datetime.now(UTC)
        if args.json:
            print(json.dumps(_details_json(approval, votes, now), indent=2))
        else:
            _print_details(approval, votes, now)
        return 0

    return _run(args, show)


# -- deciding ----------------------------------------------------------------------------------


def _approve(args: argparse.Namespace) -> int:
    return _decide(args, approve=True)


def _deny(args: argparse.Namespace) -> int:
    return _decide(args, approve=False)


def _decide(args: argparse.Namespace, *, approve: bool) -> int:
    if (refused := _decider_refused(args)) is not None:
        return refused

    async def decide(store: ApprovalStore, users: UserStore) -> int:
        verb = "Approved" if approve else "Denied"
        if args.admin is not None:
            approval = await store.override(
                args.approval_id, actor=ADMIN_ACTOR, approve=approve, reason=args.admin, comment=args.comment
            )
            print(f"{verb} approval {approval.id} as the admin (an override, recorded with its reason).")
            return 0
        user = await _authenticated(users, args)
        if user is None:
            return 1
        approval = await store.vote(
            args.approval_id, user=user.name, roles=user.roles, approve=approve, comment=args.comment
        )
        approving = _approving(await store.votes(approval.id))
        if str(approval.state) == "pending":
            print(
                f"Recorded {user.name}'s approval of {approval.id}: {approving} of {approval.quorum} approvals; "
                "still pending."
            )
        elif approve:
            print(f"{verb} approval {approval.id}: {approving} of {approval.quorum} approvals; the call may now run.")
        else:
            print(f"{verb} approval {approval.id}.")
        return 0

    return _run(args, decide, audited=True)


def _cancel(args: argparse.Namespace) -> int:
    if (refused := _decider_refused(args)) is not None:
        return refused

    async def cancel(store: ApprovalStore, users: UserStore) -> int:
        from gateway.errors import NotAnApprover

        if args.admin is not None:
            actor = ADMIN_ACTOR
            comment = args.comment if args.admin == args.comment else f"{args.comment} (admin: {args.admin})"
        else:
            user = await _authenticated(users, args)
            if user is None:
                return 1
            approval = await store.get(args.approval_id)
            if user.name != approval.user and not approval.approver_for(user.name, user.roles):
                raise NotAnApprover(
                    f"{user.name} is neither the user approval {approval.id} acts for nor among its approvers "
                    f"({', '.join(approval.approvers)}), so cannot cancel it"
                )
            actor, comment = user.name, args.comment
        cancelled = await store.cancel(args.approval_id, actor=actor, comment=comment)
        print(f"Cancelled approval {cancelled.id}.")
        return 0

    return _run(args, cancel, audited=True)


def _answer(args: argparse.Namespace) -> int:
    if args.user_key is None and not os.environ.get(USER_KEY_ENV):
        print(f"gateway: answering needs a user key (--user-key or ${USER_KEY_ENV})", file=sys.stderr)
        return 2

    async def answer(store: ApprovalStore, users: UserStore) -> int:
        user = await _authenticated(users, args)
        if user is None:
            return 1
        text = args.text if args.text is not None else args.note
        answered = await store.answer(args.approval_id, user=user.name, roles=user.roles, option=args.option, text=text)
        given = answered.answer or {}
        print(f"Answered question {answered.id}: {given.get('answer')}. The agent that asked receives it.")
        return 0

    return _run(args, answer, audited=True)


def _decider_refused(args: argparse.Namespace) -> int | None:
    """Exit status 2 unless exactly one of a user key and `--admin` says who decides."""
    if args.admin is not None and args.user_key is not None:
        print("gateway: give either --user-key or --admin, not both", file=sys.stderr)
        return 2
    if args.admin is not None:
        if not args.admin.strip():
            print("gateway: --admin needs a reason", file=sys.stderr)
            return 2
        return None
    if args.user_key is None and not os.environ.get(USER_KEY_ENV):
        print(f"gateway: deciding needs a user key (--user-key or ${USER_KEY_ENV}), or --admin REASON", file=sys.stderr)
        return 2
    return None


async def _authenticated(users: UserStore, args: argparse.Namespace) -> User | None:
    from gateway.errors import AuthenticationFailed

    key = args.user_key if args.user_key is not None else os.environ.get(USER_KEY_ENV, "")
    try:
        return await users.authenticate(key.strip())
    except AuthenticationFailed as exc:
        print(f"gateway: the user key was refused: {exc}", file=sys.stderr)
        return None


# -- stores ------------------------------------------------------------------------------------


def _run(
    args: argparse.Namespace,
    action: Callable[[ApprovalStore, UserStore], Awaitable[int]],
    *,
    audited: bool = False,
) -> int:
    config = load(args, with_connectors=False)

    async def run() -> int:
        async with _stores(config, audited=audited) as (store, users):
            return await action(store, users)

    return anyio.run(run)


@asynccontextmanager
async def _stores(config: Config, *, audited: bool) -> AsyncIterator[tuple[ApprovalStore, UserStore]]:
    """The approval and user stores; with `audited`, approval events go on an audit chain of their own."""
    from gateway.approvals import ApprovalStore
    from gateway.approvals.wakeups import ApprovalWakeups
    from gateway.identity.users import UserStore
    from gateway.notifications import WebhookNotifier
    from gateway.signals import open_signals
    from gateway.storage.database import Database

    database = Database(config.gateway.storage.url)
    collect_within = timedelta(seconds=config.gateway.approvals.collect_within)
    try:
        await database.migrate()
        users = UserStore(database)
        if not audited:
            yield ApprovalStore(database, _never_opening_sealer(), collect_within=collect_within), users
            return
        async with command_audit(database, config.gateway.audit) as recorder:
            # Approvers' webhooks hear of a decision made here too: queued during the command, delivered
            # (within the notifier's drain time) once it is done, so a failing command is not wrapped in them.
            webhooks = WebhookNotifier(config.gateway.notifications)
            store = ApprovalStore(
                database,
                _never_opening_sealer(),
                recorder=recorder,
                notify=webhooks.notify,
                collect_within=collect_within,
            )
            signals = open_signals(config.gateway.storage.url)
            wakeups = ApprovalWakeups(store, signals)
            try:
                yield store, users
            finally:
                await _signal(signals, wakeups)
                if config.gateway.notifications.webhooks:
                    await webhooks.drain()
    finally:
        await database.close()


async def _signal(signals: Signals, wakeups: ApprovalWakeups) -> None:
    """Tell the gateway processes of the changes this command committed, so calls waiting on them go on now.

    The broker runs only for this, and only when there is something to say: a command that
    changed nothing opens no listening connection.
    """
    if not wakeups.pending:
        return
    async with anyio.create_task_group() as tasks:
        await tasks.start(signals.run)
        await wakeups.flush()
        tasks.cancel_scope.cancel()


def _never_opening_sealer() -> Sealer:
    """A sealer the approval store requires but these commands never use.

    The commands read redacted arguments only; they neither hold a call (sealing) nor run one
    (opening). Its key is fresh random bytes under an id that says so, derived from no secret:
    were it ever asked to open real sealed arguments it could only fail, never reveal them.
    """
    import base64

    from gateway.approvals import Sealer

    return Sealer([("cli-never-opens", base64.b64encode(os.urandom(32)).decode())])


# -- printing ----------------------------------------------------------------------------------


def _print_details(approval: Approval, votes: tuple[Vote, ...], now: datetime) -> None:
    print(f"Approval {approval.id}: {approval.state}")
    lines = [
        ("Agent", f"{approval.agent} (roles: {', '.join(approval.roles) or '-'})"),
        ("For user", approval.user or "-"),
        ("Tool", f"{approval.tool} (connector '{approval.connector}', tool '{approval.original_tool}')"),
        ("Workflow", approval.workflow or "-"),
        ("Reasoning", approval.reasoning or "-"),
        ("Created", _when(approval.created_at) or "-"),
        ("Expires", f"{_when(approval.expires_at)} ({_left(approval, now)})"),
        ("Policies", ", ".join(approval.policy_ids) or "-"),
        ("Approvers", ", ".join(approval.approvers)),
    ]
    if approval.question is None:
        lines.append(("Quorum", f"{_approving(votes)} of {approval.quorum} approvals"))
    else:
        lines[-1] = ("Answerers", f"{', '.join(approval.approvers)} (the first answer settles it)")
    if approval.question is not None:
        question = approval.question
        lines.append(("Question", f"{question['text']} (urgency: {question.get('urgency', 'normal')})"))
        lines.append(("Options", ", ".join(question.get("options") or ()) or "none: answer in words (--text)"))
    if approval.answer is not None:
        lines.append(("Answer", f"{approval.answer['answer']} (by {approval.answer['answered_by']})"))
    if approval.decided_at is not None:
        lines.append(("Decided", _when(approval.decided_at) or "-"))
    if approval.ended_by is not None:
        said = f": {approval.end_comment}" if approval.end_comment else ""
        lines.append(("Ended", f"{approval.state} by {approval.ended_by}{said}"))
    width = max(len(label) for label, _ in lines) + 1
    for label, value in lines:
        print(f"  {label + ':':<{width}} {value}")
    print("  Held because:")
    for reason in approval.reasons or ("(no @reason given)",):
        print(f"    - {reason}")
    print("  Votes:")
    if not votes:
        print("    none yet")
    for vote in votes:
        said = f": {vote.comment}" if vote.comment else ""
        print(f"    {vote.user} {'approved' if vote.approve else 'denied'} at {_when(vote.time)}{said}")
    print("  Arguments (redacted):")
    shown = json.dumps(_folded(approval.redacted_arguments), indent=2, ensure_ascii=False)
    for line in shown.splitlines():
        print(f"    {line}")


def _summary_json(approval: Approval, votes: tuple[Vote, ...], now: datetime) -> dict[str, Any]:
    return {
        "id": approval.id,
        "state": str(approval.state),
        "agent": approval.agent,
        "user": approval.user,
        "tool": approval.tool,
        "connector": approval.connector,
        "approvals": _approving(votes),
        "quorum": approval.quorum,
        "created_at": _when(approval.created_at),
        "expires_at": _when(approval.expires_at),
        "seconds_left": _seconds_left(approval, now),
    }


def _details_json(approval: Approval, votes: tuple[Vote, ...], now: datetime) -> dict[str, Any]:
    return {
        **_summary_json(approval, votes, now),
        "roles": list(approval.roles),
        "original_tool": approval.original_tool,
        "arguments": approval.redacted_arguments,
        "arguments_digest": approval.arguments_digest,
        "reasoning": approval.reasoning,
        "workflow": approval.workflow,
        "policy_ids": list(approval.policy_ids),
        "reasons": list(approval.reasons),
        "approvers": list(approval.approvers),
        "votes": [
            {
                "user": vote.user,
                "roles": list(vote.roles),
                "approve": vote.approve,
                "comment": vote.comment,
                "time": _when(vote.time),
            }
            for vote in votes
        ],
        "decided_at": _when(approval.decided_at),
        "finished_at": _when(approval.finished_at),
        "ended_by": approval.ended_by,
        "end_comment": approval.end_comment,
        "kind": approval.kind.value,
        "question": approval.question,
        "answer": approval.answer,
    }


def _folded(value: Any) -> Any:
    """`value` with long strings and lists cut, saying how much was left out: a screen, not a dump."""
    if isinstance(value, str) and len(value) > FOLD_CHARS:
        return f"{value[:FOLD_CHARS]}… ({len(value) - FOLD_CHARS} more characters)"
    if isinstance(value, list):
        kept = [_folded(item) for item in value[:FOLD_ITEMS]]
        if len(value) > FOLD_ITEMS:
            kept.append(f"… ({len(value) - FOLD_ITEMS} more items)")
        return kept
    if isinstance(value, dict):
        return {key: _folded(item) for key, item in value.items()}
    return value


def _approving(votes: tuple[Vote, ...]) -> int:
    return sum(1 for vote in votes if vote.approve)


def _seconds_left(approval: Approval, now: datetime) -> int | None:
    if str(approval.state) != "pending":
        return None
    return max(0, int((approval.expires_at - now).total_seconds()))


def _left(approval: Approval, now: datetime) -> str:
    """Time left to decide, for a pending approval; one past its expiry is expired even before the gateway marks it."""
    if str(approval.state) != "pending":
        return "-"
    left = approval.expires_at - now
    if left <= timedelta(0):
        return "expired"
    return "in " + _duration(left)


def _duration(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    days, seconds = divmod(seconds, 86400)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {seconds:02d}s"
    return f"{seconds}s"


def _when(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value is not None else None
