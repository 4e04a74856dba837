"""Dead letters: list, replay onto their stream, purge.

A dead letter is the original entry's fields plus `dlq_*` fields: reason (`exhausted`,
`rejected`, `malformed`, `invalid`, `unknown_type`, `result_undeliverable`), error, attempts,
group, consumer, source stream and entry id, and the time it died.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from shared import registry
from shared.messaging.envelope import Envelope
from shared.messaging.errors import DecodeError
from shared.messaging.transport import Entry, Transport

__all__ = ["DeadLetterEntry", "list_dead_letters", "purge_dead_letters", "replay_dead_letters"]

DLQ_PREFIX = "dlq_"


@dataclass(frozen=True)
class DeadLetterEntry:
    """One dead letter of a stream."""

    dead_id: str
    stream: str
    reason: str
    error: str
    attempts: int
    group: str
    consumer: str
    source_entry_id: str
    dead_at_ms: int
    fields: dict[str, str]
    """The original entry's fields (the envelope), as they were."""

    @property
    def message_type(self) -> str:
        """The type named by the envelope (empty for a malformed entry)."""
        try:
            return Envelope.from_fields(self.fields).type
        except DecodeError:
            return self.fields.get("type", "")

    @property
    def payload(self) -> str:
        """The original payload (may be malformed: that can be why it died)."""
        return self.fields.get("payload", "")

    @classmethod
    def from_entry(cls, stream: str, entry: Entry) -> DeadLetterEntry:
        """Read a dead-letter stream entry."""
        fields = entry.fields or {}
        original = {k: v for k, v in fields.items() if not k.startswith(DLQ_PREFIX)}

        def number(key: str) -> int:
            try:
                return int(fields.get(key, "0"))
            except ValueError:
                return 0

        return cls(
            dead_id=entry.entry_id,
            stream=fields.get("dlq_stream", stream),
            reason=fields.get("dlq_reason", ""),
            error=fields.get("dlq_error", ""),
            attempts=number("dlq_attempts"),
            group=fields.get("dlq_group", ""),
            consumer=fields.get("dlq_consumer", ""),
            source_entry_id=fields.get("dlq_entry_id", ""),
            dead_at_ms=number("dlq_at_ms"),
            fields=original,
        )


async def list_dead_letters(
    transport: Transport, stream: str, *, count: int = 100
) -> list[DeadLetterEntry]:
    """The oldest `count` dead letters of `stream`."""
    entries = await transport.range(
        registry.dead_letter_stream(stream), start="-", end="+", count=count
    )
    return [DeadLetterEntry.from_entry(stream, entry) for entry in entries]


async def replay_dead_letters(
    transport: Transport, stream: str, *, ids: Sequence[str] | None = None, count: int = 1000
) -> list[str]:
    """Move dead letters (all, or `ids`) back onto `stream`; returns their new entry ids.
    Each move is atomic; the replayed message starts again at attempt 1."""
    dead_stream = registry.dead_letter_stream(stream)
    wanted = set(ids) if ids is not None else None
    replayed: list[str] = []
    for letter in await list_dead_letters(transport, stream, count=count):
        if wanted is not None and letter.dead_id not in wanted:
            continue
        replayed.append(await transport.replay(dead_stream, letter.dead_id, stream, letter.fields))
    return replayed


async def purge_dead_letters(
    transport: Transport, stream: str, *, ids: Sequence[str] | None = None, count: int = 10_000
) -> int:
    """Delete dead letters (all, or `ids`); returns how many were deleted."""
    dead_stream = registry.dead_letter_stream(stream)
    if ids is None:
        ids = [
            e.entry_id for e in await transport.range(dead_stream, start="-", end="+", count=count)
        ]
    return await transport.delete(dead_stream, list(ids))
