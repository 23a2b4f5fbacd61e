"""Timers on the stages of `tools/call`, installed into a gateway process by `bench/stage_times.py`.

Python imports `sitecustomize` at start from any directory on PYTHONPATH; `stage_times.py` puts
this directory there for the gateway only. Timing starts on SIGUSR1 (after the warm-up) and the
samples are written, as JSON, to $GATEWAY_STAGE_TIMES on SIGUSR2.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.util
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

#: (module, class, method, stage name); the class's method is wrapped once the module is imported.
STAGES = (
    ("gateway.front.bearer", "BearerAuthentication", "__call__", "request with authentication"),
    ("gateway.front.endpoint", "McpEndpoint", "__call__", "request in the app"),
    ("gateway.pipeline", "Pipeline", "call_tool", "pipeline"),
    ("gateway.policy.decisions", "PolicyDecisions", "decide_call", "policy decision"),
    ("gateway.policy.decisions", "PolicyDecisions", "decide_hold", "hold decision"),
    ("gateway.audit.recorder", "AuditRecorder", "record_call", "audit entry, durable"),
    ("gateway.audit.recorder", "AuditRecorder", "_write_batch", "audit: batch written"),
    ("gateway.audit.recorder", "AuditRecorder", "_plan", "audit: rows chained"),
    ("gateway.audit.sqlite_writer", "SqliteEventStore", "append", "audit: append awaited"),
    ("gateway.audit.sqlite_writer", "SqliteEventStore", "_write", "audit: SQLite transaction"),
    ("gateway.connectors.mcp_connector", "McpConnector", "call_tool", "backend hop, backend included"),
)

_samples: dict[str, list[float]] = {}
_on = False


def _record(stage: str, started: float) -> None:
    if _on:
        _samples.setdefault(stage, []).append(time.perf_counter() - started)


def _wrap(owner: type, attribute: str, stage: str) -> None:
    original = getattr(owner, attribute)
    if getattr(original, "__code__", None) and original.__code__.co_flags & 0x80:  # a coroutine function

        @functools.wraps(original)
        async def timed_async(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await original(*args, **kwargs)
            finally:
                _record(stage, started)

        setattr(owner, attribute, timed_async)
        return

    @functools.wraps(original)
    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            _record(stage, started)

    setattr(owner, attribute, timed)


class _AfterImport(importlib.abc.MetaPathFinder):
    """Wraps a stage's method right after its module is first imported."""

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        wanted = [stage for stage in STAGES if stage[0] == name]
        if not wanted:
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return None
        execute: Callable[[Any], None] = spec.loader.exec_module  # type: ignore[union-attr]

        def exec_module(module: Any) -> None:
            execute(module)
            for _, class_name, attribute, stage in wanted:
                _wrap(getattr(module, class_name), attribute, stage)

        spec.loader.exec_module = exec_module  # type: ignore[union-attr,method-assign]
        return spec


def _start(*_: object) -> None:
    global _on
    _samples.clear()
    _on = True


def _dump(*_: object) -> None:
    global _on
    _on = False
    target = os.environ["GATEWAY_STAGE_TIMES"]
    with open(target + ".part", "w", encoding="utf-8") as out:
        json.dump(_samples, out)
    os.replace(target + ".part", target)  # the reader waits for the complete file


if os.environ.get("GATEWAY_STAGE_TIMES") and sys.argv[1:2] == ["serve"]:
    sys.meta_path.insert(0, _AfterImport())
    signal.signal(signal.SIGUSR1, _start)
    signal.signal(signal.SIGUSR2, _dump)
