"""Projects: owned by a user, moving along the `ProjectStatus` lifecycle."""
