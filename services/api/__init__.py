"""The `api` actor: the REST API, the single owner of the database, and the outbox relay.

One anatomy per domain (`auth/`, `users/`, `projects/`, `tasks/`, `servers/`, `outbox/`):
`router.py` (HTTP only), `service.py` (rules), `repository.py` (all SQL), `models.py` (ORM).
The request owns the commit (`deps.session`); services never call `commit()`.
"""
