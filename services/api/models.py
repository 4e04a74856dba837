"""Every ORM model, imported once so `Base.metadata` is complete (migrations, tests)."""

from services.api.auth.models import ApiKey
from services.api.db import Base
from services.api.deploys.models import Deploy
from services.api.outbox.models import OutboxMessage
from services.api.projects.models import Project
from services.api.runs.models import AgentRun
from services.api.secrets.models import ProjectSecret
from services.api.servers.models import PortAllocation, Server
from services.api.tasks.models import Task
from services.api.users.models import User

__all__ = [
    "AgentRun",
    "ApiKey",
    "Base",
    "Deploy",
    "OutboxMessage",
    "PortAllocation",
    "Project",
    "ProjectSecret",
    "Server",
    "Task",
    "User",
]
