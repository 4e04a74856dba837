"""`ansible:deploy:queue`: langgraph → infra-service. Run an Ansible deploy."""

from __future__ import annotations

from typing import Literal

from shared.contracts.base import BaseMessage, BaseResult

__all__ = ["AnsibleDeployMessage", "AnsibleDeployResult"]


class AnsibleDeployMessage(BaseMessage):
    """Run ansible deploy."""

    job_type: Literal["deploy"] = "deploy"
    project_id: str
    project_name: str
    repo_full_name: str
    server_ip: str
    port: int
    modules: list[str] | None = None
    github_token_ref: str
    secrets_ref: str


class AnsibleDeployResult(BaseResult):
    """Ansible deploy result."""

    deployed_url: str | None = None
    server_ip: str | None = None
    port: int | None = None
    stdout: str | None = None
    stderr: str | None = None
    exit_code: int | None = None
