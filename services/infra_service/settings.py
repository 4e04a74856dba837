"""Settings of infra-service: the tree's `infra` section (`ORCHESTRATOR_INFRA__*`).

Read once in `main` (`InfraSettings.of(settings)`); tests build `InfraSettings(...)`
directly. Every field has an embedded default: the local machine is the
one server, repositories are bare repositories under `<data_dir>/repos`.
"""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from shared.app_layout import default_local_base_dir
from shared.settings import Section, Settings

__all__ = ["InfraSettings", "LocalServerSettings", "RemoteServerSettings"]


class LocalServerSettings(BaseModel):
    """The machine infra-service runs on, reached through Ansible's local connection."""

    enabled: bool = True
    handle: str = "local"
    addresses: list[str] = Field(default_factory=lambda: ["127.0.0.1", "localhost"])
    """Values of `server_ip` that mean this machine."""
    base_dir: Path | None = None
    """Where projects live; default `<data_dir>/servers/local`."""
    bind_host: str = "127.0.0.1"
    public_host: str = "127.0.0.1"
    """Host name of the URLs reported for projects deployed here."""
    python: str = Field(default_factory=lambda: sys.executable)
    """Interpreter for Ansible's modules, the supervisor and the projects' venvs."""
    runtime_site_packages: str | None = None
    """Packages made visible to project venvs (FastAPI, uvicorn); default this venv's."""

    def runtime_packages(self) -> str:
        """The site-packages directory shared with projects ('' for none)."""
        if self.runtime_site_packages is not None:
            return self.runtime_site_packages
        return sysconfig.get_path("purelib")


class RemoteServerSettings(BaseModel):
    """A server reached over SSH; its key is held by reference (`env:NAME` / `file:PATH`)."""

    handle: str
    host: str
    port: int = 22
    user: str = "root"
    ssh_key_ref: str | None = None
    base_dir: Path = Path("/opt/orchestrator")
    python: str = "/usr/bin/python3"
    bind_host: str = "0.0.0.0"  # noqa: S104 - projects on a remote server answer from outside
    public_host: str | None = None
    install_packages: bool = True
    """Install git and python3-venv with the system package manager (needs root or sudo)."""
    service_user: str = ""


class InfraSettings(Section):
    """Everything infra-service needs to know, with embedded defaults."""

    section = "infra"

    data_dir: Path = Path("var")
    repos_dir: Path | None = None
    """Local bare repositories (`<repos_dir>/<owner>/<name>.git`); default `<data_dir>/repos`."""
    git_provider: Literal["local", "github"] = "local"
    github_git_url: str = "https://github.com"
    deploy_ref: str = "HEAD"
    """The ref deployed when a request names no commit (the deploy flow pins one in
    `repo_full_name`, `owner/name@<sha>`, see `shared.deploys`): the remote's default head."""
    secrets_dir: Path | None = None
    """Root of relative `file:` secret references; default `<data_dir>/secrets`."""
    ansible_playbook: str | None = None
    """The `ansible-playbook` binary; default the one beside this Python."""
    playbook_timeout_s: float = 900.0
    health_timeout_s: float = 60.0
    health_path: str = "/health"
    cancel_poll_s: float = 1.0
    """How often a running deploy job asks the API whether its task was cancelled."""
    ssh_attempts: int = 3
    """Runs of a playbook whose host was unreachable, in all."""
    ssh_backoff_s: float = 2.0
    """Delay before the second attempt; doubles after each."""
    ssh_connect_timeout_s: int = 10
    ssh_host_key_checking: Literal["yes", "accept-new", "no"] = "accept-new"
    ssh_known_hosts_file: Path | None = None
    """Host keys of the SSH servers; default `<data_dir>/infra/ssh/known_hosts` (with
    `accept-new`, the first connection records the key; with `yes`, put it there first)."""
    reconcile_interval_s: float = Field(default=10.0, gt=0)
    """How often the deployments of archived projects are looked for (and removed, their
    ports released); once at start, then at this interval. Needs the API."""
    concurrency: int = 2
    """Jobs run at once per queue (jobs on one project or server are serialised anyway)."""
    output_tail_chars: int = 4000
    """How much of the end of stdout / stderr a result carries."""
    local: LocalServerSettings = Field(default_factory=LocalServerSettings)
    servers: list[RemoteServerSettings] = Field(default_factory=list)
    remote_defaults: RemoteServerSettings = Field(
        default_factory=lambda: RemoteServerSettings(handle="*", host="*")
    )
    """Layout of SSH servers registered in the API (base_dir, python, bind_host, ...)."""

    def within(self, system: Settings) -> InfraSettings:
        """Under the system's data directory unless the section names its own."""
        if "data_dir" in self.model_fields_set:
            return self
        return self.model_copy(update={"data_dir": system.data_dir})

    @property
    def work_dir(self) -> Path:
        """infra-service's own files: job directories, Ansible's home and temp files."""
        return (self.data_dir / "infra").resolve()

    @property
    def effective_known_hosts_file(self) -> Path:
        """The `known_hosts` file the SSH connections read and write."""
        return (self.ssh_known_hosts_file or self.work_dir / "ssh" / "known_hosts").resolve()

    @property
    def effective_repos_dir(self) -> Path:
        """Where local bare repositories live."""
        return (self.repos_dir or self.data_dir / "repos").resolve()

    @property
    def effective_secrets_dir(self) -> Path:
        """Root of relative `file:` references."""
        return (self.secrets_dir or self.data_dir / "secrets").resolve()

    @property
    def local_base_dir(self) -> Path:
        """Where projects deployed on the local machine live."""
        if self.local.base_dir is not None:
            return self.local.base_dir.resolve()
        return default_local_base_dir(self.data_dir)

    @property
    def ansible_playbook_path(self) -> str:
        """The `ansible-playbook` binary to run."""
        if self.ansible_playbook:
            return self.ansible_playbook
        return str(Path(sys.executable).parent / "ansible-playbook")
