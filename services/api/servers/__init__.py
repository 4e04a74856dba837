"""Deploy servers and their port allocations (atomic, reused on re-deploy)."""
