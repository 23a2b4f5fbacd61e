"""Telling people that a call waits for them: approval events sent to webhooks, signed and retried.

- `messages`: the JSON and Slack bodies of one approval event, never the sealed arguments.
- `signing`: the `X-Gateway-Signature` scheme, and `verify` for receivers.
- `webhooks`: `WebhookNotifier`, whose `notify` never blocks the call that triggers it.

The settings are `gateway.settings.notifications`; which events happen when is the hold stage's
and the approvals service's to say, and they call `notify`.
"""

from gateway.notifications.messages import approval_link, facts, json_body, slack_body, slack_message
from gateway.notifications.signing import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    InvalidSignature,
    sign,
    verify,
)
from gateway.notifications.webhooks import DeliveryResult, DeliveryStats, WebhookNotifier

__all__ = [
    "DELIVERY_HEADER",
    "EVENT_HEADER",
    "SIGNATURE_HEADER",
    "DeliveryResult",
    "DeliveryStats",
    "InvalidSignature",
    "WebhookNotifier",
    "approval_link",
    "facts",
    "json_body",
    "sign",
    "slack_body",
    "slack_message",
    "verify",
]
