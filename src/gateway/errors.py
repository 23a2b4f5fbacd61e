"""Every error the gateway raises on purpose, as one tree of categories.

The categories are what callers branch on; the leaves say exactly what happened, and each
message says what the reader can do about it. The front maps a failure to the wire in one place
(`gateway.front.errors`) by walking the class's MRO to the nearest category it knows, so a new
leaf needs no new mapping, and audit outcomes come from the same tree (`outcome`).

    GatewayError
    ├── ConfigError                    a configuration file is missing or invalid
    │   ├── OpenApiSpecError           an OpenAPI spec cannot be read or is not OpenAPI 3.x
    │   └── OpenApiCurationError       an OpenAPI file's curation names what the spec lacks
    ├── SdkMismatch                    the installed `mcp` SDK lacks what the gateway relies on
    ├── RequestRejected                the request cannot be taken as it is            "refused"
    │   ├── BodyTooLarge               (HTTP 413)
    │   ├── UnknownTarget
    │   │   ├── UnknownTool
    │   │   ├── UnknownResource
    │   │   └── UnknownPrompt
    │   ├── InvalidArguments
    │   │   ├── UnusableArguments      the model can correct them              "invalid_arguments"
    │   │   │   └── MissingIdempotencyKey  the arguments lack what the tool's idempotency key names
    │   │   └── ReasoningRequired
    │   ├── GatewayNotReady            no valid access policy set is loaded
    │   └── ToolUnderReview            the tool's definition waits for an admin's review (quarantined or new)
    ├── AccessDenied                                                                   "denied"
    │   ├── AuthenticationFailed       no credential, or a bad one (HTTP 401)
    │   ├── PolicyDenied               a policy (or the absence of one) said no
    │   ├── ApprovalRefused            the people denied the held call, or it expired
    │   └── AgentSuspended             an operator suspended the agent: every request is refused
    ├── CallHeld                       the call waits for people's approval; nothing ran      "held"
    │   ├── ApprovalPending            not decided within the wait: repeat the call to collect it
    │   └── ApprovalsNotConfigured     no approval can be opened (no sealing key)          "refused"
    ├── BackendFailure                 the backend could not serve the request    "backend_error"
    │   ├── BackendUnavailable
    │   │   ├── BackendNotConnected    no connection was up: the request was never sent
    │   │   └── BackendStartFailed
    │   ├── BackendTimeout                                                            "timeout"
    │   ├── BackendError               the backend's own JSON-RPC error
    │   └── ListingRefused
    ├── RecordLocked                   another call held the record's lock past `lock_wait`; nothing ran  "locked"
    ├── AuditFailure                   the audit log cannot do what was asked
    │   ├── AuditUnavailable           a call could not be recorded, so it is refused
    │   ├── ReplicaIdInUse
    │   ├── AuditExportFailed
    │   ├── InvalidAuditQuery
    │   └── InvalidAuditCheckpoints
    ├── StorageFailure
    │   ├── StorageUnavailable         the database cannot be reached (HTTP 503)
    │   │   └── DatabaseFileChanged    the SQLite file was deleted or replaced under the gateway
    │   └── SignalTooLarge
    ├── ApprovalFailure                a held call's approval cannot do what was asked
    │   ├── UnknownApproval            no approval has that id (HTTP 404)
    │   ├── ApprovalConflict           already decided, expired, or lost a race (HTTP 409)
    │   ├── NotAnApprover              the voter is not among the approvers (HTTP 403)
    │   ├── SelfApproval               the requesting agent or its user voted (HTTP 403)
    │   ├── InvalidApprovalQuery       a listing was given a limit or cursor it cannot use (HTTP 400)
    │   ├── InvalidApprovalRequest     a decision's body is not one the approvals API can use (HTTP 400)
    │   └── SealedArgumentsUnreadable  no configured key opens the sealed arguments
    ├── DuplicateCall                  a de-duplicated call can neither run nor be replayed now  "refused"
    │   ├── DuplicateInProgress        the first call with this key still runs: repeat it later
    │   ├── DuplicateOutcomeUnknown    the first call's outcome is unknown: check the backend
    │   └── UnknownIdempotencyRecord   an operator named a record that does not exist (HTTP 404)
    ├── PolicyLoadError                policy files cannot be loaded; names file and line
    └── AdministrationError            an operator's command names something wrong
        ├── InvalidIdentityName
        ├── UnknownApiKey
        ├── UnknownUser
        ├── UserExists
        ├── UserDisabled
        ├── UnknownUserKey
        ├── InvalidSuspension          a suspension without a reason, or naming no agent
        ├── NothingToAccept            accepting a tool that is not waiting for review
        ├── AgentAlreadySuspended      suspending an agent that is suspended already
        └── AgentNotSuspended          resuming an agent that is not suspended
"""

from __future__ import annotations

from typing import ClassVar


class GatewayError(Exception):
    """Base of every error raised on purpose by the gateway."""

    #: The audit log's `outcome` for a request that ended with this error.
    outcome: ClassVar[str] = "backend_error"


class ConfigError(GatewayError):
    """A configuration file is missing, unparsable or invalid; the message names file, line and key."""


class OpenApiSpecError(ConfigError):
    """An OpenAPI connector's spec cannot be read, is not OpenAPI 3.0/3.1, or has a `$ref` that resolves nowhere."""


class OpenApiCurationError(ConfigError):
    """An OpenAPI connector file's curation names an operation, parameter or rule the spec does not have."""

    def __init__(self, message: str, keys: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        #: The connector file's keys the mistake is under (`("operations", "getUser")`), to name its line.
        self.keys = keys


class SdkMismatch(GatewayError):
    """The installed `mcp` SDK lacks, or changed, an internal the gateway relies on; the gateway does not start."""


# -- the request cannot be taken as it is ------------------------------------------------------


class RequestRejected(GatewayError):
    """The request is refused before any decision: malformed, unknown target, or nothing can decide it."""

    outcome = "refused"


class BodyTooLarge(RequestRejected):
    """The request body is over `server.max_body_bytes`; answered with HTTP 413."""


class UnknownTarget(RequestRejected):
    """The request names a tool, resource or prompt the agent cannot use: absent, disabled or hidden."""


class UnknownTool(UnknownTarget):
    """The exposed tool name is not in the catalog (or is disabled, or hidden from the agent)."""


class ToolUnderReview(RequestRejected):
    """The tool is withheld until an admin accepts its definition: changed since it was pinned, or never accepted."""

    def __init__(self, message: str, *, tool: object = None) -> None:
        super().__init__(message)
        #: The withheld tool's catalog entry, so the caller can tell whether the agent may know of it at all.
        self.tool = tool


class UnknownResource(UnknownTarget):
    """The resource URI belongs to no backend in the catalog."""


class UnknownPrompt(UnknownTarget):
    """The exposed prompt name is not in the catalog (or is hidden from the agent)."""


class InvalidArguments(RequestRejected):
    """The request's arguments are not a JSON object, or break a limit the gateway enforces."""


class UnusableArguments(InvalidArguments):
    """The arguments do not match the tool's input schema, or hold text no UTF-8 can carry; the model can fix them."""

    outcome = "invalid_arguments"


class MissingIdempotencyKey(UnusableArguments):
    """The tool is de-duplicated by argument paths the call does not give: it cannot tell a repeat from a new call."""


class ReasoningRequired(InvalidArguments):
    """The tool requires the agent to state its reasoning and the call carried none."""


class InvalidWorkflowId(RequestRejected):
    """The workflow id a call names (`_meta` or `X-Workflow-Id`) is empty, too long or not printable text."""


class GatewayNotReady(RequestRejected):
    """No valid access policy set is loaded, so no request can be decided until an operator fixes the policies."""


# -- access ------------------------------------------------------------------------------------


class AccessDenied(GatewayError):
    """The caller may not do this: it did not prove who it is, or a policy says no."""

    outcome = "denied"


class AuthenticationFailed(AccessDenied):
    """A request carried no credential, or one that is unknown, revoked, expired or forged."""


class PolicyDenied(AccessDenied):
    """An access policy (or the absence of one) denied the request; the message is the reason agents may see."""

    def __init__(self, message: str, *, policy_ids: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.policy_ids = policy_ids


class ApprovalRefused(AccessDenied):
    """An approval policy held the call and it will not run: an approver denied it, or it expired or was cancelled."""


class AgentSuspended(AccessDenied):
    """An operator suspended the agent (`gateway agents suspend`): every request it makes is refused until resumed.

    The message names who suspended it, when and why, so the agent and the person behind it know
    what happened and whom to ask.
    """


# -- held for approval ---------------------------------------------------------------------------


class CallHeld(GatewayError):
    """An approval policy holds the call until people approve it; nothing ran, and the agent is told how to go on."""

    outcome = "held"


class ApprovalPending(CallHeld):
    """No decision came within the wait; repeating the identical call returns its outcome, and it never runs twice.

    It names the approval, so a client that takes tasks gets a task for it instead of an error.
    """

    def __init__(self, message: str, *, approval_id: str | None = None) -> None:
        super().__init__(message)
        self.approval_id = approval_id


class ApprovalsNotConfigured(CallHeld):
    """An approval policy holds the call but the gateway has no sealing key to keep it: refused, nothing ran."""

    outcome = "refused"


class QuestionsNotRouted(CallHeld):
    """An agent asked a person (`gateway__ask_human`) but no policy or `[questions]` names anyone to answer."""

    outcome = "refused"


# -- the backend ---------------------------------------------------------------------------------


class BackendFailure(GatewayError):
    """The backend could not serve a request the gateway allowed."""


class BackendUnavailable(BackendFailure):
    """The backend is down, restarting, or its connection broke during the call."""


class BackendNotConnected(BackendUnavailable):
    """No connection to the backend was up, so the request was never sent: retrying it cannot make it run twice."""


class BackendStartFailed(BackendUnavailable):
    """A stdio backend's command could not be started: not found, not executable, or a missing working directory."""


class BackendTimeout(BackendFailure):
    """The backend did not answer within its configured timeout."""

    outcome = "timeout"


class BackendError(BackendFailure):
    """The backend answered the request with a protocol-level error of its own."""

    def __init__(self, message: str, *, code: int, data: object = None) -> None:
        super().__init__(message)
        self.code = code
        self.data = data


class ListingRefused(BackendFailure):
    """A backend's listing breaks a bound (`max_tools`, `max_listing_bytes`); the previous listing stays in force."""


# -- coordination between agents ----------------------------------------------------------------


class RecordLocked(GatewayError):
    """Another call held the record's lock longer than the tool's `lock_wait`: this one did not run, and may be retried.

    The message names the holder (its agent, workflow and tool, and since when it holds the lock).
    """

    outcome = "locked"


# -- the audit log and storage -------------------------------------------------------------------


class AuditFailure(GatewayError):
    """The audit log cannot do what was asked of it."""


class AuditUnavailable(AuditFailure):
    """The audit log could not durably record a call, so the call must be refused rather than run unrecorded."""


class ReplicaIdInUse(AuditFailure):
    """Another live process holds the audit replica id this one was configured with; names it and its lease."""


class InvalidAuditQuery(AuditFailure, ValueError):
    """An audit search, export or prune was given a filter, cursor or duration it cannot use."""


class AuditExportFailed(AuditFailure):
    """An audit export could not be written; no partial file is left under the requested name."""


class InvalidAuditCheckpoints(AuditFailure):
    """A checkpoint file or public key given to audit verification is unreadable or malformed."""


class StorageFailure(GatewayError):
    """The database did not do what the gateway needed of it."""


class StorageUnavailable(StorageFailure):
    """The database could not be reached or refused a write the gateway needs."""


class DatabaseFileChanged(StorageUnavailable):
    """The SQLite database path no longer names the file the audit writer opened: deleted, moved or replaced."""


class SignalTooLarge(StorageFailure, ValueError):
    """A payload would exceed what one database notification can carry; send an id and let receivers look it up."""


# -- approvals of held calls ---------------------------------------------------------------------


class ApprovalFailure(GatewayError):
    """A held call's approval cannot do what was asked: it is unknown, already settled, or not the voter's to decide."""

    outcome = "refused"


class UnknownApproval(ApprovalFailure, LookupError):
    """No approval has the given id (it never existed, or was pruned)."""


class ApprovalConflict(ApprovalFailure):
    """The approval is not in a state that allows this: already decided, expired, or another writer changed it first.

    `state` is its state as last read, so the caller can say what happened instead.
    """

    def __init__(self, message: str, *, state: str | None = None) -> None:
        super().__init__(message)
        self.state = state


class NotAnApprover(ApprovalFailure):
    """The person voting is neither named by the approval's approvers nor holds one of its approver roles."""

    outcome = "denied"


class SelfApproval(ApprovalFailure):
    """The agent that made the call, or the user it acts for, tried to decide its own call: separation of duties."""

    outcome = "denied"


class InvalidApprovalQuery(ApprovalFailure, ValueError):
    """A listing of approvals was given a state, limit or cursor it cannot use."""


class InvalidApprovalRequest(ApprovalFailure, ValueError):
    """A decision sent to the approvals API has a body it cannot use: not a JSON object, or a denial without why."""


class InvalidAnswer(ApprovalFailure, ValueError):
    """An answer to an agent's question is not one it can take: not among its options, empty, or not a question."""


class SealedArgumentsUnreadable(ApprovalFailure):
    """The sealed arguments cannot be opened: their key is not configured, or the key or data is wrong."""


# -- de-duplicated calls (idempotency keys) -----------------------------------------------------


class DuplicateCall(GatewayError):
    """A call with an idempotency key repeats one that can neither be replayed nor run again now; nothing ran."""

    outcome = "refused"


class DuplicateInProgress(DuplicateCall):
    """The first call with this key is still running after the wait: repeating it later returns its outcome."""


class DuplicateKeyReused(DuplicateCall):
    """A call reuses an idempotency key with other arguments than the call holding it: another call, not a repeat."""


class DuplicateOutcomeUnknown(DuplicateCall):
    """The gateway stopped while the first call with this key ran: it may have taken effect, so nothing repeats it."""


class UnknownIdempotencyRecord(DuplicateCall, LookupError):
    """No idempotency record has the id an operator gave (never existed, expired, or already cleared)."""


class IdempotencyRecordRunning(DuplicateCall):
    """An operator tried to clear the record of a call still running (a repeat would run beside it)."""


# -- policies and administration -----------------------------------------------------------------


class PolicyLoadError(GatewayError):
    """Policy files could not be read, parsed or validated against the catalog's schema; names file and line."""


class AdministrationError(GatewayError):
    """An operator's command (keys, agents, users) names something that is invalid or does not exist."""


class InvalidIdentityName(AdministrationError, ValueError):
    """An agent or role name is empty, longer than 128 characters, or has characters outside [A-Za-z0-9_.@-]."""


class UnknownApiKey(AdministrationError, LookupError):
    """No API key has the given id (revoking or showing a key that was never created)."""


class UnknownUser(AdministrationError, LookupError):
    """No user has the given name (it was never created)."""


class UserExists(AdministrationError):
    """A user of that name exists already, perhaps disabled: names are never reused, so votes keep one meaning."""


class UserDisabled(AdministrationError):
    """The user is disabled, so nothing new (a key) is given to them."""


class UnknownUserKey(AdministrationError, LookupError):
    """No user key has the given id."""


class InvalidSuspension(AdministrationError, ValueError):
    """A suspension names no agent (or one too long), or gives no reason, which is what the agent is told."""


class AgentAlreadySuspended(AdministrationError):
    """The agent is suspended already; its suspension says by whom, when and why."""


class AgentNotSuspended(AdministrationError, LookupError):
    """The agent is not suspended, so there is nothing to resume."""


class NothingToAccept(AdministrationError):
    """An admin accepted a tool that is not waiting for review (already accepted, or never listed)."""
