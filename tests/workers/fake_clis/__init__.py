"""Fake agent CLIs, run as scripts (their directory on sys.path), never imported by tests."""
