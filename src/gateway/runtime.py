"""The parts of a running gateway and the order they start and stop in.

The HTTP app, the stdio front and the CLI's `tools list` all need the same parts (storage,
keys, backends, catalog, pipeline); this module builds them from a `Config` once and owns
their lifetimes, so each entry point is only wiring.

`runtime.signals` carries what one gateway process must tell the others sharing its database
(see `gateway.signals`). The runtime itself uses two channels: `catalog_changed` (payload
`{"connector": name}`), published when this process sees a backend's listing change, so the
clients listening on other processes are told to re-list; and `policies_reloaded`
(`{"policies": count}`), published after this process loaded edited policy files, so the
others look at the files now rather than at their next poll. Received signals run the same
local handlers and are never re-published, so nothing loops. Other parts subscribe to their
own channels, e.g. `cancel` with `{"session": ..., "request_id": ...}`, `approval_changed`
with `{"id": ..., "state": ...}` (`gateway.approvals.wakeups`: a decision made in any process
wakes the requests waiting on it in all of them), and `agent_suspensions` with `{"agent": ...}`
(`gateway.coordination.suspended_agents`: every process re-reads the suspended agents at once),
and `tool_pins` with `{"connector": ...}` (`gateway.pinning`: every process re-reads the pinned
tool definitions, so a quarantine or an acceptance holds on all of them).
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import anyio
import anyio.abc
import anyio.to_thread
from sqlalchemy.exc import SQLAlchemyError

from gateway.approvals import ApprovalStore, Sealer
from gateway.approvals.sweeper import SWEEPER_LEASE, ApprovalSweeper
from gateway.approvals.wakeups import ApprovalWakeups
from gateway.audit import AuditRecorder, Redactor, default_replica_id, load_private_key, prune
from gateway.audit.leases import ReplicaLease, close_dead_chains
from gateway.catalog import Catalog
from gateway.catalog.builtin import GATEWAY_TOOLS_SETTINGS
from gateway.catalog.pins import PinBook, Review
from gateway.catalog.store import load_listings, save_listing
from gateway.config import Config
from gateway.connectors import Connector, ConnectorFactory, build_connector
from gateway.connectors.base import HealthState, Listing
from gateway.connectors.listing_bounds import bound_listing
from gateway.coordination.idempotency import Duplicates
from gateway.coordination.idempotency_store import IdempotencyStore
from gateway.coordination.locks import RecordLocks
from gateway.coordination.rate_sync import RateSync
from gateway.coordination.rates import RateCounter
from gateway.coordination.suspended_agents import SuspendedAgents
from gateway.coordination.suspensions import SuspensionStore
from gateway.coordination.workflows import WorkflowStore
from gateway.errors import GatewayError, ListingRefused, ReplicaIdInUse
from gateway.front.health import Readiness
from gateway.front.server import ChangeNotifier
from gateway.gateway_tools import GatewayTools
from gateway.holding import HoldStage
from gateway.identity.api_keys import ApiKeyStore
from gateway.identity.authenticators import CompositeAuthenticator
from gateway.identity.jwt_auth import JwtAuthenticator
from gateway.notifications import WebhookNotifier
from gateway.pinning import PinKeeper, PinStore
from gateway.pinning.keeper import SIGNAL as PIN_SIGNAL
from gateway.pipeline import Pipeline
from gateway.policy import PolicyEngine
from gateway.resource_uris import exposed_uri
from gateway.settings.connectors import GATEWAY_TOOLS_CONNECTOR
from gateway.signals import Signal, open_signals
from gateway.storage.database import Database
from gateway.storage.leases import named_lease
from gateway.telemetry import Telemetry

logger = logging.getLogger(__name__)

_PRUNE_INTERVAL_SECONDS = 24 * 3600
#: How often each process deletes expired idempotency records (an indexed delete, idempotent across replicas).
_IDEMPOTENCY_SWEEP_SECONDS = 600


class GatewayRuntime:
    """Every part of one gateway process; `connector_factory` makes each backend's connector."""

    def __init__(self, config: Config, *, connector_factory: ConnectorFactory = build_connector) -> None:
        self.config = config
        self.database = Database(config.gateway.storage.url)
        auth = config.gateway.auth
        self.keys = ApiKeyStore(self.database, cache_seconds=auth.key_cache_seconds)
        self.jwt = JwtAuthenticator(auth.issuers, people=auth.people) if auth.issuers else None
        self.authenticator = CompositeAuthenticator(
            self.keys if auth.api_keys else None, self.jwt, max_token_bytes=auth.max_token_bytes
        )
        new_tools = {c.name: c.new_tools or config.gateway.catalog.new_tools for c in config.connectors}
        #: The pinned tool definitions this process knows; read from storage once the runtime runs.
        self.pin_book = PinBook(lambda connector: new_tools.get(connector, "accept"))
        self.catalog = Catalog(
            (*config.connectors, GATEWAY_TOOLS_SETTINGS),
            separator=config.gateway.server.name_separator,
            reasoning=config.gateway.reasoning,
            pins=self.pin_book,
        )
        self.notifier = ChangeNotifier()
        #: The configured backends: what health, readiness and metrics report on.
        self.backends: Mapping[str, Connector] = {
            c.name: connector_factory(c, self._listing_changed, self._resource_updated) for c in config.connectors
        }
        self.policy = PolicyEngine(config.gateway.policies.dir)
        audit = config.gateway.audit
        self.redactor = Redactor(audit.redaction)
        self.telemetry = Telemetry(config.gateway.telemetry, redact=self.redactor.redact_value)
        self.telemetry.watch_sessions(lambda: self.notifier.session_count)
        self.telemetry.watch_backends(
            lambda: {name: c.health.state is HealthState.HEALTHY for name, c in self.backends.items()}
        )
        self._signing_key = load_private_key(audit.signing_key) if audit.signing_key else None
        self.audit = self._recorder(audit.replica_id or default_replica_id())
        approvals = config.gateway.approvals
        webhooks = config.gateway.notifications
        self.webhooks = (
            WebhookNotifier(webhooks, deliveries=self.telemetry.instruments.notification_deliveries)
            if webhooks.webhooks
            else None
        )
        self.approvals = (
            ApprovalStore(
                self.database,
                Sealer([(key.id, key.key.get_secret_value()) for key in approvals.sealing_keys]),
                recorder=self.audit,
                max_result_bytes=approvals.max_result_bytes,
                notify=self.webhooks.notify if self.webhooks is not None else None,
                collect_within=timedelta(seconds=approvals.collect_within),
            )
            if approvals.sealing_keys
            else None
        )
        self.signals = open_signals(config.gateway.storage.url)
        self.pins = PinKeeper(
            PinStore(self.database),
            self.pin_book,
            config.gateway.catalog,
            separator=config.gateway.server.name_separator,
            recorder=self.audit,
            notify=self.webhooks.notify_tool if self.webhooks is not None else None,
            publish=self._publish,
        )
        #: Rings the requests waiting on an approval when it changes, here or in another process.
        self.approval_wakeups = ApprovalWakeups(self.approvals, self.signals) if self.approvals is not None else None
        #: Expiries and escalations, swept by whichever gateway process holds the sweeper's lease.
        self.sweeper = (
            ApprovalSweeper(
                self.approvals,
                named_lease(self.database, SWEEPER_LEASE, seconds=approvals.sweep_lease_seconds),
                interval=approvals.sweep_interval,
            )
            if self.approvals is not None
            else None
        )
        #: Workflows: steps read from the audit log, notes and shared results (`coordination.workflows`).
        self.workflows = WorkflowStore(self.database)
        #: The kill switch: suspending an agent cancels its pending approvals and is audited and signalled.
        self.suspensions = SuspensionStore(
            self.database, recorder=self.audit, approvals=self.approvals, signals=self.signals
        )
        #: The suspended agents, in memory: every request is checked against them.
        self.suspended_agents = SuspendedAgents(
            self.suspensions, self.signals, poll_interval=auth.suspension_poll_seconds
        )
        #: Everything a call can reach: the backends, and the gateway's own tools beside them.
        self.connectors: Mapping[str, Connector] = {
            **self.backends,
            GATEWAY_TOOLS_CONNECTOR: GatewayTools(
                self.approvals, self._listing_changed, workflows=self.workflows, redactor=self.redactor
            ),
        }
        holds = HoldStage(
            self.approvals,
            self.policy.decisions,
            self.redactor,
            approvals,
            executor=self.audit.replica_id,
            policy_version=self._policy_version,
            wakeups=self.approval_wakeups,
            questions=config.gateway.questions,
        )
        #: Record locks of the tools whose connector file names one; the pipeline sees them only when a tool does.
        self.locks = RecordLocks(self.database, config.connectors, self.signals)
        #: Each agent's recent calls (`context.rate`), shared with the other processes on the database.
        self.rates = RateCounter()
        self.rate_sync = RateSync(
            self.database,
            self.rates,
            replica=self.audit.replica_id,
            interval=config.gateway.rates.sync_interval,
            needed=self._policies_read_rates,
        )
        #: Calls a connector file gives an idempotency key run once per key, on every replica.
        self.idempotency = IdempotencyStore(self.database, executor=self.audit.replica_id)
        self.duplicates = Duplicates(
            self.idempotency,
            config.connectors,
            redactor=self.redactor,
            max_result_bytes=approvals.max_result_bytes,
        )
        self.pipeline = Pipeline(
            self.catalog,
            self.connectors,
            self.policy,
            self.audit,
            self.telemetry,
            holds=holds,
            locks=self.locks if self.locks.configured else None,
            suspended=self.suspended_agents,
            rates=self.rates,
            duplicates=self.duplicates,
            tools_page_size=config.gateway.server.tools_page_size,
            workflows=self.workflows,
            redactor=self.redactor,
        )
        self.started = False
        #: Set once every backend's first connection attempt has ended, connected or not.
        self.backends_attempted = anyio.Event()
        self.persist_listings = False
        #: One listing change at a time, and none while the first policies load: each builds on the last.
        self._catalog_lock = anyio.Lock()
        #: Set once the first policies were loaded: from then on every catalog change re-validates them.
        self._policies_follow_catalog = False

    def _policy_version(self) -> str | None:
        """When the policies in force were loaded: an approval keeps it, to show what held the call."""
        loaded_at = self.policy.store.status.loaded_at
        return loaded_at.isoformat() if loaded_at is not None else None

    def _recorder(self, replica_id: str) -> AuditRecorder:
        """A recorder on the chain `replica_id`: this process's own, or a dead process's being closed."""
        audit = self.config.gateway.audit
        return AuditRecorder(
            self.database,
            self.redactor,
            replica_id=replica_id,
            signing_key=self._signing_key,
            checkpoint_every=audit.checkpoint_every,
            max_batch=audit.max_batch,
            max_wait_ms=audit.max_wait_ms,
            write_timeout=audit.write_timeout,
            on_batch=self.telemetry.audit_committed,
        )

    async def _close_chain(self, replica_id: str) -> int:
        """Run a dead process's chain recovery: its open calls get the outcome `unknown`, then a clean close.

        The approved calls it was running become `unknown` too: a process never comes back under
        its replica id (`default_replica_id`), so its own start-up recovery would never find them,
        and they would stay `executing`, their agents told "pending" for ever.
        """
        recorder = self._recorder(replica_id)
        try:
            report = await recorder.start(closing_for=self.audit.replica_id)
        finally:
            with anyio.CancelScope(shield=True):  # a shutdown meanwhile must not leave its writer running
                await recorder.close()
        await self._recover_approvals(replica_id)
        return report.recovered_calls

    async def _recover_approvals(self, executor: str) -> None:
        """Approved and de-duplicated calls `executor` was running when it stopped: never re-run, marked `unknown`."""
        for record in await self.idempotency.recover_after_crash(executor=executor):
            logger.warning(
                "a de-duplicated call was running when the gateway stopped; its outcome is unknown and repeats "
                "are refused until an operator clears it (gateway idempotency clear)",
                extra={"record_id": record.id, "tool": record.tool, "replica_id": executor},
            )
        if self.approvals is None:
            return
        for approval in await self.approvals.recover_after_crash(executor=executor):
            logger.warning(
                "an approved call was running when the gateway stopped; its outcome is unknown",
                extra={"approval_id": approval.id, "tool": approval.tool, "replica_id": executor},
            )

    async def _reclaim_audit_lease(self, lease: ReplicaLease) -> None:
        """The heartbeat came after the lease ran out: claim the id again unless another process has it now.

        A live process may meanwhile have closed this chain as a dead one's (its open calls are
        then recorded `unknown`); the chain itself stays whole, since the recorder continues from
        the head in the database.
        """
        try:
            await lease.acquire(wait_for_holder=False)
        except ReplicaIdInUse as exc:
            logger.error(
                "audit: another process holds this process's replica id now; restart this process",
                extra={"replica_id": lease.replica_id, "error": str(exc)},
            )
            return
        logger.warning(
            "audit: this process's lease on its replica id ran out before its heartbeat and was claimed again",
            extra={"replica_id": lease.replica_id},
        )

    async def _keep_audit_lease(self, lease: ReplicaLease) -> None:
        """Renew this process's lease and close the chains of processes whose leases expired.

        Both run from the first moment, so a chain a crashed process left is closed soon after
        its lease runs out, by whichever live process looks first.
        """
        seconds = self.config.gateway.audit.lease_seconds
        while True:
            try:
                if not await lease.renew():
                    await self._reclaim_audit_lease(lease)
                await close_dead_chains(
                    self.database, own_replica_id=lease.replica_id, seconds=seconds, recover=self._close_chain
                )
            except (GatewayError, SQLAlchemyError) as exc:
                extra = {"replica_id": lease.replica_id, "error": str(exc)}
                logger.warning("audit: lease heartbeat failed; will retry", extra=extra)
            await anyio.sleep(seconds / 3)

    def _policies_read_rates(self) -> bool:
        """Whether a loaded policy reads `context.rate`: only then are counts shared with the other processes."""
        state = self.policy.store.current
        return state is not None and state.reads_context("rate")

    async def _listing_changed(self, connector: str, listing: Listing) -> None:
        """Rebuild the catalog and re-validate the policies in worker threads: a listing of thousands of
        tools takes seconds to process, and requests keep being served meanwhile.

        Requests go on under the previous policies, which fail closed for what they have not validated:
        a new or changed tool is neither listed nor callable until the policies that know it are in force.
        """
        async with self._catalog_lock:
            if self.persist_listings:
                await self.pins.observe(connector, listing, live=True)
            changed = await anyio.to_thread.run_sync(self.catalog.update, connector, listing)
            if changed and self.persist_listings:
                await save_listing(self.database, connector, listing)
            if changed and self._policies_follow_catalog:
                logger.info("catalog changed", extra={"connector": connector, "tools": len(listing.tools)})
                # Policies are re-validated against the new tools before anyone is told to re-list.
                await anyio.to_thread.run_sync(self.policy.store.catalog_changed, self.catalog)
        if changed and self.started:
            await self.notifier.catalog_changed()
            await self._publish("catalog_changed", {"connector": connector})

    async def _pins_changed_elsewhere(self, signal: Signal | None = None) -> None:
        """Pins or reviews changed in another process (or by the CLI): re-read them and re-gate the catalog."""
        if await self.pins.load():
            await self._regate()

    async def _regate(self) -> None:
        """Apply the book to every connector's last listing; clients re-list if what they may see changed."""
        async with self._catalog_lock:
            changed = await anyio.to_thread.run_sync(self.catalog.refresh)
        if changed and self.started:
            await self.notifier.catalog_changed()

    async def _poll_pins(self, interval: float) -> None:
        """Re-read the pins now and then: on SQLite the CLI cannot signal, and a signal may be lost."""
        while True:
            await anyio.sleep(interval)
            try:
                await self._pins_changed_elsewhere()
            except GatewayError as exc:
                logger.warning("tool pins not re-read; will retry", extra={"error": str(exc)})

    async def accept_tool(self, name: str, *, actor: str, reason: str) -> Review:
        """An admin accepts a tool waiting for review (the console); served here at once, elsewhere by signal."""
        review = await self.pins.accept(name, actor=actor, reason=reason)
        await self._regate()
        return review

    async def _resource_updated(self, connector: str, uri: str) -> None:
        """Agents know the resource by its exposed URI only, so that is the one they are told of."""
        await self.notifier.resource_updated(exposed_uri(connector, uri))

    async def _publish(self, channel: str, payload: dict[str, object]) -> None:
        """Tell the other processes; failing to is logged, never raised: they also find out on their own."""
        try:
            await self.signals.publish(channel, payload)
        except GatewayError as exc:
            logger.warning("signal not sent to other processes", extra={"channel": channel, "error": str(exc)})

    async def _catalog_changed_elsewhere(self, signal: Signal) -> None:
        """Another process saw a backend change: tell the clients listening here to re-list."""
        await self.notifier.catalog_changed()

    async def _policies_reloaded_elsewhere(self, signal: Signal) -> None:
        """Another process loaded edited policies: look at the files now instead of at the next poll."""
        await anyio.to_thread.run_sync(self.policy.store.reload_if_changed, self.catalog)

    async def _watch_policies(self, interval: float) -> None:
        """Poll the policy files; loads run in a worker thread so requests keep flowing."""
        while True:
            if await anyio.to_thread.run_sync(self.policy.store.reload_if_changed, self.catalog):
                await self._publish("policies_reloaded", {"policies": self.policy.store.status.policy_count})
            await anyio.sleep(interval)

    async def reload_policies(self) -> bool:
        """Load the policy files now, changed or not (an operator's "reload"); returns whether a new set is active.

        Runs like the watcher's reload: in a worker thread, and told to the other processes when
        it loaded. A failure keeps the set in force and is logged; `policy.store.status` says why.
        Loaded even when the files look unchanged, so it also retries a load that failed for a
        reason outside the files.
        """
        loaded = await anyio.to_thread.run_sync(self.policy.store.try_load, self.catalog)
        if loaded:
            await self._publish("policies_reloaded", {"policies": self.policy.store.status.policy_count})
        return loaded

    async def _follow(
        self,
        channel: str,
        handler: Callable[[Signal], Awaitable[None]],
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run `handler` for each signal another process sends on `channel`; own signals were handled here."""
        async with self.signals.subscribe(channel) as subscription:
            task_status.started()
            async for signal in subscription:
                if signal.local:
                    continue
                try:
                    await handler(signal)
                except Exception:  # boundary: one failed handler must not stop the next signals
                    logger.exception("handling a signal failed", extra={"channel": channel, "origin": signal.origin})

    async def _seed_catalog(self) -> None:
        """Last known listings first, so a backend down at start still has its tools and policies."""
        stored = await load_listings(self.database)
        await self.pins.load()
        self.pin_book.enabled = True
        limits = {settings.name: settings.listing_limits() for settings in self.config.connectors}
        for name, listing in stored.items():
            if name not in limits:
                continue
            # Stored by a gateway with other bounds perhaps: held to this one's, like a live listing.
            try:
                listing, problems = bound_listing(name, listing, limits[name])
            except ListingRefused as exc:
                logger.warning("stored listing not used", extra={"connector": name, "problem": str(exc)})
                continue
            for problem in problems:
                logger.warning("stored listing breaks a bound", extra={"connector": name, "problem": problem})
            await self.pins.observe(name, listing, live=False)
            self.catalog.update(name, listing)
        self.persist_listings = True

    async def record_auth_refused(self, reason: str, client_address: str | None, path: str) -> None:
        """Refused authentications are audited too; a failing audit write must not turn a 401 into a 500."""
        try:
            await self.audit.record_auth_refused(reason, client_address, path=path, auth_method="bearer")
        except GatewayError as exc:
            logger.error("refused authentication could not be audited", extra={"error": str(exc)})

    async def _prune_daily(self, retention_days: float) -> None:
        """Retention: drop entries older than the setting; a kept checkpoint anchors what remains."""
        while True:
            cutoff = datetime.now(UTC) - timedelta(days=retention_days)
            try:
                report = await prune(self.database, cutoff)
                logger.info("audit retention applied", extra={"older_than": cutoff.isoformat(), "report": str(report)})
            except GatewayError as exc:
                logger.error("audit retention failed; will retry", extra={"error": str(exc)})
            await anyio.sleep(_PRUNE_INTERVAL_SECONDS)

    async def _drop_expired_records(self) -> None:
        """Delete the idempotency records past their window; a repeat replaces an expired one anyway."""
        while True:
            try:
                dropped = await self.idempotency.drop_expired()
                if dropped:
                    logger.info("expired idempotency records dropped", extra={"records": dropped})
            except (GatewayError, SQLAlchemyError) as exc:
                logger.warning("dropping expired idempotency records failed; will retry", extra={"error": str(exc)})
            await anyio.sleep(_IDEMPOTENCY_SWEEP_SECONDS)

    def load_policies(self) -> None:
        """First load, against the stored listings and what has listed so far; a failure (logged by the engine)
        denies every request. Policies naming a backend that has not listed wait for it (`gateway.policy.waiting`)."""
        self.policy.store.try_load(self.catalog)

    def readiness(self) -> Readiness:
        """What `/readyz` reads of this gateway, and nothing more."""
        return Readiness(
            started=lambda: self.started,
            ping_storage=self.database.ping,
            signals_state=lambda: self.signals.state,
            policies=lambda: self.policy.store.status,
            backends=lambda: {name: connector.health for name, connector in self.backends.items()},
            catalog_problems=self.catalog.problems,
        )

    @asynccontextmanager
    async def running(
        self, *, migrate: bool = True, predecessor_pid: int | None = None, wait_for_backends: bool = False
    ) -> AsyncIterator[GatewayRuntime]:
        """Storage first (fail fast on a bad URL), then audit, signals and policies; stop in reverse.

        The backends start in the background, a few at a time, once everything else is ready: the
        gateway serves from then on, whatever they do (slow to start, hanging in the handshake,
        dead). A backend's tools join the catalog as it lists, through the same path as any later
        listing (`_listing_changed`): its tools are unknown until then, and once they appear they
        are served only under a policy set validated with them, so every policy naming them
        (access and approval, forbids included) is in force before a call to one is decided.

        `wait_for_backends=True` returns only after every backend's first attempt, for a front that
        cannot tell its clients that the tools changed. `migrate=False` when the schema is known
        current (a supervisor migrated it for all its workers); `predecessor_pid` is the dead
        process this one replaces, whose audit lease it takes at once.
        """
        if migrate:
            await self.database.migrate()
        lease = ReplicaLease(
            self.database,
            self.audit.replica_id,
            seconds=self.config.gateway.audit.lease_seconds,
            predecessor_pid=predecessor_pid,
        )
        self.telemetry.install()
        try:
            try:
                await lease.acquire()
            except ReplicaIdInUse as exc:
                # Said in one line of its own: the server's report of the failed start is a traceback.
                logger.error(f"gateway not started: {exc}", extra={"replica_id": lease.replica_id})
                raise
            self.audit.write_only_while(lambda: lease.valid)
            recovery = await self.audit.start()
            if recovery.recovered_calls:
                logger.warning(
                    "calls left open by a crash are recorded with outcome 'unknown'",
                    extra={"replica_id": recovery.replica_id, "calls": recovery.recovered_calls},
                )
            await self._recover_approvals(self.audit.replica_id)
            async with anyio.create_task_group() as task_group:
                await task_group.start(self.signals.run)
                # Read before anything is served, so a suspended agent is refused from the first request.
                await task_group.start(self.suspended_agents.follow)
                if self.approval_wakeups is not None:
                    await task_group.start(self.approval_wakeups.run)
                if self.webhooks is not None:
                    await task_group.start(self.webhooks.run)
                if self.locks.configured:
                    await task_group.start(self.locks.run)
                # Renewed from now on: starting the backends may take longer than the lease lasts.
                task_group.start_soon(self._keep_audit_lease, lease)
                await task_group.start(self.rate_sync.run)
                await self._seed_catalog()
                # The gateway's own tools list at once: policies may name them.
                await self._start_connectors(task_group, (self.connectors[GATEWAY_TOOLS_CONNECTOR],))
                if wait_for_backends:
                    await self._start_backends(task_group)
                async with self._catalog_lock:
                    self.load_policies()
                    self._policies_follow_catalog = True
                await task_group.start(self._follow, "catalog_changed", self._catalog_changed_elsewhere)
                await task_group.start(self._follow, "policies_reloaded", self._policies_reloaded_elsewhere)
                await task_group.start(self._follow, PIN_SIGNAL, self._pins_changed_elsewhere)
                task_group.start_soon(self._poll_pins, self.config.gateway.catalog.review_poll_seconds)
                if self.config.gateway.auth.api_keys:
                    await task_group.start(
                        self.keys.follow_revocations, self.config.gateway.auth.revocation_poll_seconds
                    )
                task_group.start_soon(self._watch_policies, self.config.gateway.policies.reload_interval)
                if self.sweeper is not None:
                    task_group.start_soon(self.sweeper.run)
                if self.config.gateway.audit.retention_days is not None:
                    task_group.start_soon(self._prune_daily, self.config.gateway.audit.retention_days)
                if self.duplicates.configured:
                    task_group.start_soon(self._drop_expired_records)
                self.started = True
                if not wait_for_backends:
                    # After `started`: every first listing then reaches the clients connected meanwhile.
                    task_group.start_soon(self._start_backends, task_group)
                try:
                    yield self
                finally:
                    self.started = False
                    for connector in self.connectors.values():
                        await connector.close()
                    task_group.cancel_scope.cancel()
        finally:
            await self.audit.close()
            try:
                await lease.release()
            except (GatewayError, SQLAlchemyError) as exc:  # it expires by itself; the chain is closed cleanly
                logger.warning("audit: lease not released", extra={"replica_id": lease.replica_id, "error": str(exc)})
            if self.sweeper is not None:
                # Released so another process sweeps from its next look; bounded, as it runs out by itself.
                with anyio.move_on_after(5, shield=True):
                    await self.sweeper.close()
            if self.jwt is not None:
                await self.jwt.aclose()
            self.telemetry.shutdown()
            await self.database.close()

    @asynccontextmanager
    async def connected(self) -> AsyncIterator[GatewayRuntime]:
        """Only the backends, for commands that inspect the live catalog (no storage, no policies)."""
        async with anyio.create_task_group() as task_group:
            await self._start_connectors(task_group, self.connectors.values())
            self.backends_attempted.set()
            try:
                yield self
            finally:
                for connector in self.connectors.values():
                    await connector.close()
                task_group.cancel_scope.cancel()

    async def _start_backends(self, task_group: anyio.abc.TaskGroup) -> None:
        """Every backend's first attempt, a few at a time; `backends_attempted` is set when the last one ended.

        The gateway serves meanwhile. Ten SDK-based stdio backends importing at once took both
        cores of a small host for seconds, and the gateway's own first answers with them: one
        fewer starting than there are cores leaves it a core. A backend counts as starting until
        its first attempt ends or `_NEXT_START_AFTER` passes, so a hanging one holds no one up.
        """
        began = anyio.current_time()
        await self._start_connectors(task_group, self.backends.values(), at_once=_backends_starting_at_once())
        self.backends_attempted.set()
        states = [connector.health.state for connector in self.backends.values()]
        logger.info(
            "every backend's first connection attempt ended",
            extra={
                "seconds": round(anyio.current_time() - began, 3),
                "healthy": sum(state is HealthState.HEALTHY for state in states),
                "backends": len(states),
            },
        )

    async def _start_connectors(
        self, task_group: anyio.abc.TaskGroup, connectors: Iterable[Connector], *, at_once: int | None = None
    ) -> None:
        """Start `connectors` in parallel, at most `at_once` starting (all, without it); returns once every
        first attempt ended."""
        started = list(connectors)
        slots = anyio.Semaphore(at_once or max(1, len(started)))
        async with anyio.create_task_group() as starting:
            for connector in started:
                await slots.acquire()
                starting.start_soon(_start_holding, connector, task_group, slots, starting)
        for connector in started:
            if connector.name not in self.backends:
                continue
            health = connector.health
            logger.info(
                "backend state at start",
                extra={"connector": connector.name, "state": health.state.value, "detail": health.detail},
            )


#: How long a backend's first attempt may hold a starting slot before the next backend starts anyway.
_NEXT_START_AFTER = 1.0


def _backends_starting_at_once() -> int:
    return max(1, (os.cpu_count() or 2) - 1)


async def _start_holding(
    connector: Connector, task_group: anyio.abc.TaskGroup, slots: anyio.Semaphore, starting: anyio.abc.TaskGroup
) -> None:
    """`connector.start`, holding one of `slots` until its first attempt ends or `_NEXT_START_AFTER` passes."""
    ended = anyio.Event()

    async def release() -> None:
        with anyio.move_on_after(_NEXT_START_AFTER):
            await ended.wait()
        slots.release()

    starting.start_soon(release)
    try:
        await connector.start(task_group)
    finally:
        ended.set()
