"""The scaffolder actor: creates a project's repository from templates (`scaffolder:queue`)."""
