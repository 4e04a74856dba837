"""Agent run records, usage sums and budget caps."""
