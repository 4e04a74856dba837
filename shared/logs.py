"""One logging setup for every process: structlog lines, for people or as JSON.

`configure_logging` applies `Settings.log_level` and `Settings.log_format` (environment:
`ORCHESTRATOR_LOG_LEVEL`, `ORCHESTRATOR_LOG_FORMAT`) to structlog and to the standard library's
loggers (uvicorn, aiogram, ...), which are rendered through the same processors. The format
`auto` (the default) writes JSON lines when the stream is not a terminal and the console
renderer when it is. Every line carries the actor it was logged for, the task and the
correlation id of the message being handled, and the trace and span ids when a span is
current (see `shared.observability`). Lines go to
stderr, so a command's own output on stdout (a chat, `--json`) stays clean. Call it once per
process, before anything logs: each logger keeps the setup it first ran with (calling it
again only reaches loggers not used yet).
"""

from __future__ import annotations

import logging
import sys
from typing import Literal, TextIO

import structlog
from opentelemetry import trace
from structlog.typing import EventDict, Processor

from shared.observability.context import current_actor, current_task_id

__all__ = ["LogFormat", "add_ambient_facts", "configure_logging", "level_number", "resolve_format"]

LogFormat = Literal["auto", "console", "json"]

_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_CHATTY = ("httpx", "httpcore", "alembic", "aiosqlite", "asyncio", "aiogram.event")
"""Libraries whose INFO lines are per request or per migration step: shown from WARNING,
unless the level is DEBUG."""


def level_number(level: str) -> int:
    """The numeric level of a level name; a clear `ValueError` for an unknown one."""
    name = level.strip().upper()
    if name not in _LEVELS:
        raise ValueError(f"log level {level!r} is not one of {', '.join(_LEVELS)}")
    return int(logging.getLevelNamesMapping()[name])


def add_ambient_facts(_logger: object, _method: str, event: EventDict) -> EventDict:
    """Add the actor, the task, and the current span's trace and span ids to a line."""
    actor = current_actor.get()
    if actor and "actor" not in event:
        event["actor"] = actor
    if "task_id" not in event:
        task_id = current_task_id.get()
        if task_id:
            event["task_id"] = task_id
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event.setdefault("trace_id", format(context.trace_id, "032x"))
        event.setdefault("span_id", format(context.span_id, "016x"))
    return event


def resolve_format(fmt: LogFormat, stream: TextIO) -> Literal["console", "json"]:
    """`auto`: JSON unless `stream` is a terminal."""
    if fmt == "auto":
        isatty = getattr(stream, "isatty", None)
        return "console" if callable(isatty) and isatty() else "json"
    return fmt


def configure_logging(
    level: str = "INFO", fmt: LogFormat = "console", *, stream: TextIO | None = None
) -> None:
    """Route structlog and stdlib logging to `stream` (default stderr) at `level`."""
    number = level_number(level)
    if fmt not in ("auto", "console", "json"):
        raise ValueError(f"log format {fmt!r} is not 'auto', 'console' or 'json'")
    out = stream if stream is not None else sys.stderr
    fmt = resolve_format(fmt, out)
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        add_ambient_facts,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso" if fmt == "json" else "%Y-%m-%d %H:%M:%S"),
    ]
    renderer: Processor
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
        shared.append(structlog.processors.format_exc_info)
    else:
        # plain tracebacks: structlog's default with rich installed renders every frame's
        # local variables, which hold keys, tokens and the task's environment
        renderer = structlog.dev.ConsoleRenderer(
            colors=out.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(number),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        # a logger resolves this setup once, at its first call: an unresolved one pays ~3 µs
        # per call even for a filtered-out debug line, on every message of the bus
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
        )
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_orchestrator", False):
            root.removeHandler(old)
    handler._orchestrator = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(number)
    for name in _CHATTY:
        logging.getLogger(name).setLevel(number if number <= logging.DEBUG else logging.WARNING)
