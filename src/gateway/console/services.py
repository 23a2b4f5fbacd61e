"""What the console's pages read and act through: the running gateway's parts, handed over once.

Pages never build their own stores or reach into the runtime; they get this, so a page module
says by its imports alone what it can touch.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.approvals import ApprovalStore
from gateway.audit import AuditRecorder
from gateway.catalog import Catalog
from gateway.console.oidc import ConsoleSignIn
from gateway.console.sessions import ConsoleSessions
from gateway.coordination.suspensions import SuspensionStore
from gateway.coordination.workflows import WorkflowStore
from gateway.front.approvals_api import ApprovalFeed
from gateway.identity.api_keys import ApiKeyStore
from gateway.identity.people import PeopleAuthenticator
from gateway.identity.users import UserStore
from gateway.policy import PolicyEngine
from gateway.runtime import GatewayRuntime
from gateway.settings.console import ConsoleSettings
from gateway.storage.database import Database


@dataclass(frozen=True, slots=True)
class ConsoleServices:
    runtime: GatewayRuntime
    settings: ConsoleSettings
    sessions: ConsoleSessions
    people: PeopleAuthenticator
    users: UserStore
    feed: ApprovalFeed | None
    #: Sign-in through the identity provider (`[console.oidc]`), or None: user keys only.
    signin: ConsoleSignIn | None = None

    @property
    def database(self) -> Database:
        return self.runtime.database

    @property
    def approvals(self) -> ApprovalStore | None:
        return self.runtime.approvals

    @property
    def audit(self) -> AuditRecorder:
        return self.runtime.audit

    @property
    def keys(self) -> ApiKeyStore:
        return self.runtime.keys

    @property
    def suspensions(self) -> SuspensionStore:
        return self.runtime.suspensions

    @property
    def policy(self) -> PolicyEngine:
        return self.runtime.policy

    @property
    def catalog(self) -> Catalog:
        return self.runtime.catalog

    @property
    def workflows(self) -> WorkflowStore:
        """Workflows read from the audit log, with their notes and shared results."""
        return self.runtime.workflows
