"""Deploys: the history of a project's releases (written by the deploy flow), and rollback."""
