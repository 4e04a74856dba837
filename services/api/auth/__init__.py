"""Credentials: API keys stored hashed, with a scope (admin, service, user)."""
