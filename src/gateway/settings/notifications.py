"""Who is told when a call waits for approval: the `[notifications]` table and its `[[notifications.webhooks]]`.

A held call waits until people act, so approvers must hear of it without polling a console. Each
webhook is one receiver (a chat channel, an incident tool, a service of the operator's own) and
the events it wants. Messages carry who asks to run what and why, so they leave the gateway only
over TLS; plain http is accepted for the local machine alone (a relay beside the gateway, tests).
"""

from __future__ import annotations

import ipaddress
from typing import Literal

import httpx
from pydantic import Field, SecretStr, field_validator, model_validator

from gateway.settings.base import SettingsModel

WebhookEvent = Literal["created", "escalated", "decided", "expired", "tool_quarantined"]
#: Every event a webhook can subscribe to: an approval's, in the order it meets them, then a
#: pinned tool's definition changing at its backend (`gateway.pinning`).
WEBHOOK_EVENTS: tuple[WebhookEvent, ...] = ("created", "escalated", "decided", "expired", "tool_quarantined")

_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})
#: Shorter secrets are guessable enough that a signature proves little.
MIN_SECRET_LENGTH = 16


class WebhookSettings(SettingsModel):
    name: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="Name of the webhook in logs, metrics and delivery health (letters, digits, `_.-`).",
    )
    url: str = Field(
        description="Where messages are POSTed: https://, or http:// to a loopback host only.",
    )
    format: Literal["json", "slack"] = Field(
        default="json",
        description=(
            "`json`: the gateway's signed JSON message; `slack`: a Slack-compatible message (`text` and "
            "`blocks`) for an incoming-webhook URL."
        ),
    )
    secret: SecretStr | None = Field(
        default=None,
        description=(
            "Key of the `X-Gateway-Signature` HMAC (at least 16 characters; use `${ENV}`). Required for "
            "`json`; for `slack` the URL itself is the secret and the signature is sent only if this is set."
        ),
    )
    events: tuple[WebhookEvent, ...] = Field(
        default=WEBHOOK_EVENTS,
        min_length=1,
        description="Which events are sent: any of `created`, `escalated`, `decided`, `expired`, `tool_quarantined`.",
    )
    timeout: float = Field(
        default=5.0, gt=0, le=60, description="Seconds one attempt may take, connecting to the whole answer."
    )
    max_attempts: int = Field(
        default=5,
        ge=1,
        le=20,
        description="Attempts per message, the first included; timeouts, connection errors, 429 and 5xx are retried.",
    )
    console_url: str | None = Field(
        default=None,
        description=(
            "Base URL of the gateway's console as approvers reach it; each message then links to "
            "`{console_url}/ui/approvals/{id}`."
        ),
    )

    @field_validator("url")
    @classmethod
    def _receiver_url(cls, value: str) -> str:
        value = value.strip()
        try:
            parsed = httpx.URL(value)
        except httpx.InvalidURL as error:
            raise ValueError(f"{value!r} is not a URL: {error}") from None
        if parsed.scheme == "https" and parsed.host:
            return value
        if parsed.scheme == "http" and parsed.host and _is_loopback(parsed.host):
            return value
        raise ValueError(
            f"{value!r} must be an https:// URL (plain http is accepted only for a loopback host), "
            "because messages name agents, users and tools, and whoever alters them in transit misleads approvers"
        )

    @field_validator("console_url")
    @classmethod
    def _console_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"console_url {value!r} must be an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("events")
    @classmethod
    def _distinct_events(cls, value: tuple[WebhookEvent, ...]) -> tuple[WebhookEvent, ...]:
        return tuple(event for event in WEBHOOK_EVENTS if event in value)

    @model_validator(mode="after")
    def _secret_fits(self) -> WebhookSettings:
        if self.secret is None:
            if self.format == "json":
                raise ValueError(
                    f"webhook {self.name!r} needs a `secret`: receivers of the json format must be able to "
                    "check that a message came from this gateway"
                )
            return self
        if len(self.secret.get_secret_value()) < MIN_SECRET_LENGTH:
            raise ValueError(f"webhook {self.name!r}: `secret` must be at least {MIN_SECRET_LENGTH} characters")
        return self


class NotificationsSettings(SettingsModel):
    webhooks: tuple[WebhookSettings, ...] = Field(
        default=(), description="Receivers told about approvals; none: nobody is notified."
    )

    @field_validator("webhooks")
    @classmethod
    def _distinct_names(cls, value: tuple[WebhookSettings, ...]) -> tuple[WebhookSettings, ...]:
        seen: set[str] = set()
        for webhook in value:
            if webhook.name in seen:
                raise ValueError(f"two webhooks are named {webhook.name!r}; names identify them in logs and metrics")
            seen.add(webhook.name)
        return value


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
