"""Tasks: created with their queue message (outbox), moving along `TaskStatus`."""
