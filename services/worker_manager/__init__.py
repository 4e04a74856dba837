"""The `worker-manager` actor: creates, relays to and deletes coding-agent workers.

Consumes `worker:commands`, answers on `worker:responses`, relays `send_message` to
`worker:{id}:input` and waits for `worker:{id}:output`. Workers run as local processes (the
default) or Docker containers, behind `runtime.WorkerRuntime`; their state lives in a Redis
registry (`registry.WorkerRegistry`). Entry point: `main.run_actor(ctx)` (`shared.actor`).
"""
