"""Observability of the whole system: Prometheus metrics served per process, OpenTelemetry
traces exported from the standard `OTEL_*` variables, and the ambient facts (actor, task)
that metrics, spans and log lines carry. `docs/observability.md` is the operator's guide."""
