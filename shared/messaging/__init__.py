"""The typed Redis Streams runtime (`docs/architecture.md`, "Messaging").

```python
bus = Bus(redis, actor=Actor.LANGGRAPH)
await bus.publish("engineering:queue", EngineeringMessage(...))
consumer = bus.consumer("engineering:queue", handle_engineering)
await consumer.run()      # until consumer.stop()
```

At-least-once delivery with one consumer group per consuming actor; acknowledgement after
the handler succeeded; deletion once every required group acknowledged; lease renewal and
reclaim; bounded retries with backoff, then the dead-letter stream; results to the message's
`callback_stream`; request/reply by `request_id`; progress streams; idempotent effects.
Tests run it on a real Redis (the project's rule: no in-memory broker in place of one).
"""

from shared.messaging.bus import Bus
from shared.messaging.consumer import Consumer, ConsumerOptions, Handler
from shared.messaging.context import MessageContext, current_correlation_id, current_envelope
from shared.messaging.dlq import DeadLetterEntry
from shared.messaging.envelope import Envelope, decode_message
from shared.messaging.errors import (
    DeadLetter,
    DecodeError,
    IdempotencyBusyError,
    MessagingError,
    PublishError,
    RequestTimeoutError,
    Retry,
)
from shared.messaging.metrics import Metrics
from shared.messaging.redis_transport import RedisTransport

__all__ = [
    "Bus",
    "Consumer",
    "ConsumerOptions",
    "DeadLetter",
    "DeadLetterEntry",
    "DecodeError",
    "Envelope",
    "Handler",
    "IdempotencyBusyError",
    "MessageContext",
    "MessagingError",
    "Metrics",
    "PublishError",
    "RedisTransport",
    "RequestTimeoutError",
    "Retry",
    "current_correlation_id",
    "current_envelope",
    "decode_message",
]
