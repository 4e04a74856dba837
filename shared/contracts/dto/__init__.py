"""REST DTOs: projects, tasks, users."""

from shared.contracts.dto.project import ProjectCreate, ProjectDTO, ProjectStatus
from shared.contracts.dto.task import TaskCreate, TaskDTO, TaskStatus, TaskType
from shared.contracts.dto.user import UserDTO

__all__ = [
    "ProjectCreate",
    "ProjectDTO",
    "ProjectStatus",
    "TaskCreate",
    "TaskDTO",
    "TaskStatus",
    "TaskType",
    "UserDTO",
]
