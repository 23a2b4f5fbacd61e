"""The gateway's own tools (`gateway__approval_status`, `gateway__workflow_status`, `gateway__ask_human`, ...).

The running gateway serves them (`gateway/gateway_tools.py`); `gateway policy test` and
`--catalog` checks read the same definitions, so a policy that names them is checked against
what agents will really see.
"""

from __future__ import annotations

from gateway.connectors.base import JsonObject, Listing
from gateway.settings.connectors import GatewayToolsConnector

APPROVAL_STATUS = "approval_status"
WORKFLOW_STATUS = "workflow_status"
WORKFLOW_NOTE = "workflow_note"
ASK_HUMAN = "ask_human"

_APPROVAL_STATE_NAMES = (
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

_APPROVAL_STATUS_TOOL: JsonObject = {
    "name": APPROVAL_STATUS,
    "title": "Status of a held call",
    "description": (
        "Where one of your calls that is held for human approval stands: pending (who must decide, how many "
        "approvals it has, when it expires), approved, denied (by whom and why), expired, or run. Give the "
        "approval id that the held call's answer named. This only reports: to run an approved call or get the "
        "result of one that ran, repeat the identical call (same tool, same arguments); it never runs twice."
    ),
    "inputSchema": {
        "type": "object",
        "properties": {"id": {"type": "string", "description": "The approval id the held call's answer named."}},
        "required": ["id"],
        "additionalProperties": False,
    },
    "outputSchema": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "tool": {"type": "string"},
            "state": {"type": "string", "enum": list(_APPROVAL_STATE_NAMES)},
            "approvers": {"type": "array", "items": {"type": "string"}},
            "quorum": {"type": "integer"},
            "approvals": {"type": "integer", "description": "Distinct people who approved so far."},
            "expiresAt": {"type": "string"},
            "decidedAt": {"type": ["string", "null"]},
            "reasons": {"type": "array", "items": {"type": "string"}},
            "deniedBy": {"type": ["string", "null"]},
            "cancelledBy": {"type": ["string", "null"]},
            "comment": {"type": ["string", "null"]},
        },
        "required": ["id", "tool", "state"],
    },
    "annotations": {"readOnlyHint": True, "idempotentHint": True, "openWorldHint": False},
}


_TEXT_OR_NULL = {"type": ["string", "null"]}
_WORKFLOW_ARGUMENT = {
    "type": "string",
    "description": "The workflow id; leave it out for the workflow of this call (its _meta, header or session).",
}
_WORKFLOW_STATUS_TOOL: JsonObject = {
    "name": WORKFLOW_STATUS,
    "title": "Status of a workflow",
    "description": (
        "What has happened so far in a workflow that several agents work on together: every step (which agent "
        "called which tool, what policy decided, how it ended, and a short result summary where the tool shares "
        "one), the notes agents left for each other, and the calls still pending human approval. Read it before "
        "acting, so you do not redo or contradict what another agent already did."
    ),
    "inputSchema": {
        "type": "object",
        "properties": {
            "workflow": _WORKFLOW_ARGUMENT,
            "limit": {"type": "integer", "minimum": 1, "maximum": 200, "description": "Latest steps to show (50)."},
        },
        "additionalProperties": False,
    },
    "outputSchema": {
        "type": "object",
        "properties": {
            "workflow": {"type": "string"},
            "agents": {"type": "array", "items": {"type": "string"}},
            "steps": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "callId": {"type": "string"},
                        "time": {"type": "string"},
                        **{key: _TEXT_OR_NULL for key in ("tool", "agent", "user", "decision", "outcome")},
                        **{key: _TEXT_OR_NULL for key in ("reason", "summary")},
                    },
                },
            },
            "totalSteps": {"type": "integer"},
            "truncated": {"type": "boolean", "description": "Older steps were left out."},
            "notes": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string"},
                        "agent": {"type": "string"},
                        "user": _TEXT_OR_NULL,
                        "text": {"type": "string"},
                        "time": {"type": "string"},
                    },
                },
            },
            "notesTruncated": {"type": "boolean"},
            "pendingApprovals": {"type": "array", "items": {"type": "object"}},
        },
        "required": ["workflow", "steps", "notes", "pendingApprovals"],
    },
    "annotations": {"readOnlyHint": True, "idempotentHint": True, "openWorldHint": False},
}
_WORKFLOW_NOTE_TOOL: JsonObject = {
    "name": WORKFLOW_NOTE,
    "title": "Leave a note in a workflow",
    "description": (
        "Leave a hand-off note for the other agents working in a workflow (what you did, what you found, what "
        "is left to do); they read it with workflow_status. Do not put secrets in it: notes are kept and shown."
    ),
    "inputSchema": {
        "type": "object",
        "properties": {
            "text": {"type": "string", "minLength": 1, "maxLength": 4000, "description": "The note."},
            "workflow": _WORKFLOW_ARGUMENT,
        },
        "required": ["text"],
        "additionalProperties": False,
    },
    "outputSchema": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "workflow": {"type": "string"},
            "agent": {"type": "string"},
            "time": {"type": "string"},
        },
        "required": ["id", "workflow", "agent", "time"],
    },
    "annotations": {"readOnlyHint": False, "destructiveHint": False, "idempotentHint": False, "openWorldHint": False},
}
_ASK_HUMAN_TOOL: JsonObject = {
    "name": ASK_HUMAN,
    "title": "Ask a person",
    "description": (
        "Ask a person a question and wait for the answer, when you are unsure, see an anomaly or need a human "
        "decision. Give options to have the person choose one of them. The answer (and who gave it) is this "
        "tool's result; if it says the question is pending, repeat the identical call later to collect the answer."
    ),
    "inputSchema": {
        "type": "object",
        "properties": {
            "question": {"type": "string", "minLength": 1, "maxLength": 4000, "description": "What to ask, in full."},
            "options": {
                "type": "array",
                "items": {"type": "string", "minLength": 1, "maxLength": 200},
                "minItems": 2,
                "maxItems": 20,
                "uniqueItems": True,
                "description": "The answers the person may choose from; without, they answer in their own words.",
            },
            "urgency": {"type": "string", "enum": ["low", "normal", "high"], "default": "normal"},
        },
        "required": ["question"],
        "additionalProperties": False,
    },
    "outputSchema": {
        "type": "object",
        "properties": {
            "questionId": {"type": "string"},
            "answer": {"type": "string"},
            "option": {"type": ["string", "null"], "description": "The option chosen, when options were given."},
            "answeredBy": {"type": "string"},
            "answeredAt": {"type": "string"},
        },
        "required": ["questionId", "answer", "answeredBy", "answeredAt"],
    },
    "annotations": {"readOnlyHint": True, "openWorldHint": False},
}


#: The settings and the listing of the built-in connector, as a catalog takes them.
GATEWAY_TOOLS_SETTINGS = GatewayToolsConnector()
GATEWAY_TOOLS_LISTING = Listing(
    tools=(_APPROVAL_STATUS_TOOL, _WORKFLOW_STATUS_TOOL, _WORKFLOW_NOTE_TOOL, _ASK_HUMAN_TOOL)
)
