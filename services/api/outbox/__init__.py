"""The outbox: queue messages written in the same transaction as their rows, then relayed."""
