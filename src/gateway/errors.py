"""Every error the gateway raises, one class per situation.

The front maps each class to an MCP error code or an HTTP status in one table
(`gateway.front.errors`), so the pipeline and the parts below it never decide how a failure
looks on the wire. Each class names when it happens; its message says what the caller can do.
"""

from __future__ import annotations


class GatewayError(Exception):
    """Base of every error raised on purpose by the gateway."""


class ConfigError(GatewayError):
    """A configuration file is missing, unparsable or invalid; the message names file, line and key."""


class AuthenticationFailed(GatewayError):
    """A request carried no credential, or one that is unknown, revoked, expired or forged."""


class UnknownTool(GatewayError):
    """The exposed tool name is not in the catalog (or is disabled)."""


class UnknownResource(GatewayError):
    """The resource URI belongs to no backend in the catalog."""


class UnknownPrompt(GatewayError):
    """The exposed prompt name is not in the catalog."""


class InvalidArguments(GatewayError):
    """The request's arguments are not a JSON object, or break a limit the gateway enforces."""


class UnusableArguments(InvalidArguments):
    """The arguments do not match the tool's input schema, or hold text no UTF-8 can carry; the model can fix them."""


class ReasoningRequired(InvalidArguments):
    """The tool requires the agent to state its reasoning and the call carried none."""


class BackendUnavailable(GatewayError):
    """The backend is down, restarting, or its connection broke during the call."""


class BackendStartFailed(BackendUnavailable):
    """A stdio backend's command could not be started: not found, not executable, or a missing working directory."""


class BackendTimeout(GatewayError):
    """The backend did not answer within its configured timeout."""


class BackendError(GatewayError):
    """The backend answered the request with a protocol-level error of its own."""

    def __init__(self, message: str, *, code: int, data: object = None) -> None:
        super().__init__(message)
        self.code = code
        self.data = data


class ListingRefused(GatewayError):
    """A backend's listing breaks a bound (`max_tools`, `max_listing_bytes`); the previous listing stays in force."""


class StorageUnavailable(GatewayError):
    """The database could not be reached or refused a write the gateway needs."""


class InvalidIdentityName(GatewayError, ValueError):
    """An agent or role name is empty, longer than 128 characters, or has characters outside [A-Za-z0-9_.@-]."""


class UnknownApiKey(GatewayError, LookupError):
    """No API key has the given id (revoking or showing a key that was never created)."""


class PolicyDenied(GatewayError):
    """An access policy (or the absence of one) denied the request; the message is the reason agents may see."""

    def __init__(self, message: str, *, policy_ids: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.policy_ids = policy_ids


class GatewayNotReady(GatewayError):
    """No valid access policy set is loaded, so no request can be decided until an operator fixes the policies."""


class PolicyLoadError(GatewayError):
    """Policy files could not be read, parsed or validated against the catalog's schema; names file and line."""


class AuditUnavailable(GatewayError):
    """The audit log could not durably record a call, so the call must be refused rather than run unrecorded."""


class ReplicaIdInUse(GatewayError):
    """Another live process holds the audit replica id this one was configured with; names it and its lease."""


class InvalidAuditQuery(GatewayError, ValueError):
    """An audit search, export or prune was given a filter, cursor or duration it cannot use."""


class AuditExportFailed(GatewayError):
    """An audit export could not be written; no partial file is left under the requested name."""


class InvalidAuditCheckpoints(GatewayError):
    """A checkpoint file or public key given to audit verification is unreadable or malformed."""
