"""The whole of gateway.toml, and with the connector files, everything a gateway starts with."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, ValidationInfo, field_validator

from gateway.settings.approvals import ApprovalSettings
from gateway.settings.audit import AuditSettings
from gateway.settings.auth import AuthSettings
from gateway.settings.base import SettingsModel
from gateway.settings.catalog import CatalogSettings
from gateway.settings.connector_kinds import AnyConnector
from gateway.settings.connectors import ConnectorsSettings
from gateway.settings.console import ConsoleSettings
from gateway.settings.console_oidc import check_console_client
from gateway.settings.logs import LoggingSettings
from gateway.settings.notifications import NotificationsSettings
from gateway.settings.policies import PoliciesSettings
from gateway.settings.questions import QuestionSettings
from gateway.settings.rates import RateSettings
from gateway.settings.reasoning import ReasoningSettings
from gateway.settings.server import ServerSettings
from gateway.settings.storage import StorageSettings
from gateway.settings.telemetry import TelemetrySettings


class GatewaySettings(SettingsModel):
    server: ServerSettings = Field(
        default=ServerSettings(), description="The HTTP endpoint agents connect to, and its sessions."
    )
    storage: StorageSettings = Field(
        default=StorageSettings(), description="Where keys, the audit log and backends' last listings are kept."
    )
    auth: AuthSettings = Field(
        default=AuthSettings(),
        description="Which credentials agents, and people deciding held calls, may authenticate with.",
    )
    logging: LoggingSettings = Field(default=LoggingSettings(), description="The gateway's own log on stderr.")
    reasoning: ReasoningSettings = Field(
        default=ReasoningSettings(), description="Asking agents why they call a tool, without changing the agent."
    )
    telemetry: TelemetrySettings = Field(
        default=TelemetrySettings(),
        description="Traces and metrics; nothing leaves the process unless `otlp_endpoint` is set.",
    )
    audit: AuditSettings = Field(
        default=AuditSettings(), description="The write-ahead audit log: its chain, checkpoints, retention and readers."
    )
    connectors: ConnectorsSettings = Field(
        default=ConnectorsSettings(), description="Where the backends are described."
    )
    policies: PoliciesSettings = Field(
        default=PoliciesSettings(), description="Where the Cedar access policies live and how often they are re-read."
    )
    approvals: ApprovalSettings = Field(
        default=ApprovalSettings(), description="Calls that approval policies hold until people approve them."
    )
    questions: QuestionSettings = Field(
        default=QuestionSettings(),
        description="Questions agents ask people with `gateway__ask_human`: who answers, and for how long.",
    )
    console: ConsoleSettings = Field(
        default=ConsoleSettings(), description="The web console at `/ui`: who may sign in, and for how long."
    )
    notifications: NotificationsSettings = Field(
        default=NotificationsSettings(),
        description="Webhooks told when a call is held, escalated, decided or expires, so approvers hear of it.",
    )
    catalog: CatalogSettings = Field(
        default=CatalogSettings(),
        description="Pinned tool definitions: new tools accepted on first sight or held for review.",
    )
    rates: RateSettings = Field(
        default=RateSettings(), description="Counting each agent's recent calls for `context.rate`, across replicas."
    )
    source: Path | None = Field(default=None, exclude=True)

    @field_validator("console")
    @classmethod
    def _console_client_is_a_people_audience(cls, console: ConsoleSettings, info: ValidationInfo) -> ConsoleSettings:
        """Checked on `console` (declared after `auth`), so a refusal names the [console] table's line."""
        auth = info.data.get("auth")
        if console.oidc is not None and auth is not None:
            check_console_client(console.oidc, auth.people)
        return console


class Config(SettingsModel):
    """Everything the gateway was started with: its own settings and every backend's."""

    gateway: GatewaySettings
    connectors: tuple[AnyConnector, ...]
