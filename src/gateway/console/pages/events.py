"""The console's live updates: one server-sent event stream per open page.

`approvals` is sent the moment this process commits an approval change, and when a look at the
table (every `POLL` seconds) shows another process changed one; `tick` every `TICK` seconds lets
the overview refresh its figures. The page re-reads its live parts when told; with JavaScript off
nothing is lost but the liveness.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import anyio
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from gateway.approvals import ApprovalState, ApprovalStore
from gateway.console.access import Permission, Visitor
from gateway.console.guard import Guard
from gateway.console.services import ConsoleServices

POLL = 2.0
TICK = 10.0


def routes(services: ConsoleServices, guard: Guard) -> list[BaseRoute]:
    async def events(request: Request, visitor: Visitor) -> Response:
        return StreamingResponse(
            _stream(services, request.query_params.get("seen")),
            media_type="text/event-stream",
            headers={"cache-control": "no-store", "x-accel-buffering": "no"},
        )

    return [Route("/events", guard.page(Permission.VIEWER, events), methods=["GET"])]


async def _signature(store: ApprovalStore | None) -> str:
    """A short digest of the waiting approvals and their versions: equal digests, nothing to re-read."""
    if store is None:
        return ""
    page = await store.list(state=ApprovalState.PENDING, limit=200)
    listed = ";".join(f"{approval.id}:{approval.version}" for approval in page.approvals)
    return hashlib.sha256(listed.encode()).hexdigest()[:16]


async def live_seen(services: ConsoleServices) -> str:
    """What a page with live parts was rendered from (`data-live-seen`), for its stream to compare with."""
    return await _signature(services.approvals)


async def _stream(services: ConsoleServices, rendered_from: str | None) -> AsyncIterator[bytes]:
    yield b"retry: 3000\n\n"
    store, feed = services.approvals, services.feed
    seen = await _signature(store)
    if rendered_from is not None and rendered_from != seen:
        # Changed between rendering the page and (re)connecting: nothing announced it, so say it now.
        yield b"event: approvals\ndata: {}\n\n"
    next_tick = anyio.current_time() + TICK
    if feed is None:
        while True:
            await anyio.sleep(TICK)
            yield b"event: tick\ndata: {}\n\n"
    with feed.subscribe() as changes:
        while True:
            changed = False
            with anyio.move_on_after(POLL):
                async for _ in changes:
                    changed = True
                    break
                else:
                    return  # the feed closed: the server is stopping
            now_seen = await _signature(store)
            if changed or now_seen != seen:
                seen = now_seen
                yield b"event: approvals\ndata: {}\n\n"
            if anyio.current_time() >= next_tick:
                next_tick = anyio.current_time() + TICK
                yield b"event: tick\ndata: {}\n\n"
