"""The handlers of infra-service, free of the bus: a message and a frozen `InfraDeps` in, a
result out. `main` wires them to `provisioner:queue` and `ansible:deploy:queue`.

A failed playbook is a `failed` result (never retried in a loop); an unreachable server is
retried with backoff first. Every text that leaves a handler (results, progress, logs) has
the resolved secret values redacted, and secret values themselves only ever travel to
Ansible through its environment.

Cancellation. A deploy whose task (`<task_id>~<step>` request) is cancelled through the API
before or while its playbook runs is stopped: `ansible-playbook`'s process group is killed,
then `abort_deploy.yml` kills the job's step still running on the server and undoes what the
job did there (`files/rollback.py`):
- a first deploy leaves nothing: its project process is stopped and the project's directory
  (service.json, the supervisor's entry) removed;
- a redeploy leaves the previous release running: its commit, service.json and env file are
  put back and, when the job had already replaced it, the previous release is started again
  (the least surprising outcome: cancelling an update never takes the project down);
- a job cancelled before it reached the server changes nothing there, and one whose new
  release already passed its health check is too late to undo: that release keeps running.
The result is `failed` with an error starting `deploy cancelled`, and its `deployed_url`
says whether the project still answers on the port: None means nothing of it runs there any
more (the deploy flow then releases the port allocation). When the undo itself fails, the
project is assumed to run (`deployed_url` set), so no port is freed under a live process.
A cancellation after the job finished changes nothing.

Pinned deploys. `repo_full_name` may name the repository pinned at a commit,
`owner/name@<sha>` (`shared.deploys`, the contract has no commit field): the job fetches and
releases exactly that commit (else `settings.deploy_ref`, the remote's head), and the project
runs with `APP_COMMIT=<sha>` in its environment.

Safe releases. A new release that fails its health check is stopped and the previous one is
put back at once (`deployctl.py release`): the result is `failed` with the health output, its
error says whether the previous release serves again, and its `deployed_url` is set exactly
when it does (the same meaning as after a cancellation: something of the project answers).
"""

from __future__ import annotations

import re
import time
from typing import Any, Literal

import structlog

from services.infra_service.ansible import (
    PlaybookJob,
    PlaybookName,
    PlaybookRun,
    run_with_ssh_retries,
)
from services.infra_service.ansible_output import Redactor, tail
from services.infra_service.cancellation import until_cancelled
from services.infra_service.deps import (
    InfraDeps,
    KeyedLocks,
    ProgressReporter,
    RemoveProjectResult,
    app_lock_key,
    app_name_of,
)
from services.infra_service.errors import (
    InfraError,
    PlaybookError,
    RepositoryNotFoundError,
    SecretNotFoundError,
)
from services.infra_service.repos import RepoSource, repo_source
from services.infra_service.secrets import parse_env_text, render_env_text
from services.infra_service.servers import ServerStatus, ServerTarget
from shared.contracts import (
    AnsibleDeployMessage,
    AnsibleDeployResult,
    BaseMessage,
    ProvisionerMessage,
    ProvisionerResult,
)
from shared.deploys import split_pinned
from shared.steps import report_step, task_of_step

__all__ = [
    "InfraDeps",
    "KeyedLocks",
    "ProgressReporter",
    "RemoveProjectResult",
    "app_lock_key",
    "app_name_of",
    "handle_ansible_deploy_message",
    "handle_provisioner_message",
    "remove_project",
]

_log = structlog.get_logger(__name__)


BOT_MODULE = "telegram"
"""The module whose bot runs as a process of the deploy, with its token from `BOT_TOKEN`."""
BOT_TOKEN = "BOT_TOKEN"  # noqa: S105 - the name of the secret, not a value

_MODULE = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")


def module_names(modules: list[str] | None) -> list[str]:
    """A deploy's module names, which become directories of the checkout: plain names only
    (`backend`, `telegram`), never a path; `InfraError` naming the first that is not."""
    for module in modules or []:
        if not _MODULE.match(module):
            raise InfraError(f"module name {module[:60]!r} is not a plain name ([a-z0-9_-])")
    return list(modules or [])


def _elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


async def _run(
    deps: InfraDeps, message: BaseMessage, playbook: PlaybookName, job: PlaybookJob
) -> PlaybookRun:
    async def on_task(name: str) -> None:
        if not name.startswith("Report"):  # the playbooks' reporting tasks are no step
            await report_step(deps.progress, message, "progress", f"{playbook}: {name}", step=name)

    return await run_with_ssh_retries(
        deps.runner,
        job,
        attempts=deps.settings.ssh_attempts,
        backoff_s=deps.settings.ssh_backoff_s,
        on_task=on_task,
        sleep=deps.sleep,
    )


async def _ssh_key(deps: InfraDeps, target: ServerTarget) -> str | None:
    return None if target.ssh_key_ref is None else await deps.secrets.resolve(target.ssh_key_ref)


def _base_vars(target: ServerTarget) -> dict[str, object]:
    return {"infra_base_dir": str(target.base_dir), "infra_python": target.python}


async def handle_provisioner_message(
    message: ProvisionerMessage, deps: InfraDeps
) -> ProvisionerResult:
    """Provision the server of `message.server_handle` with `provision_server.yml`.

    The server's status moves to `provisioning`, then `ready` (or `unreachable` / `error`)."""
    started = time.monotonic()
    log = _log.bind(request_id=message.request_id, server=message.server_handle)
    await report_step(deps.progress, message, "started", f"provisioning {message.server_handle}")
    target: ServerTarget | None = None
    redact = Redactor()
    try:
        target = await deps.servers.by_handle(message.server_handle)
        await deps.servers.set_status(target.handle, ServerStatus.PROVISIONING)
        key = await _ssh_key(deps, target)
        redact = Redactor([key] if key else [])
        job = PlaybookJob(
            playbook="provision_server",
            target=target,
            variables={
                **_base_vars(target),
                "infra_force_reinstall": message.force_reinstall,
                "infra_is_recovery": message.is_recovery,
                "infra_install_packages": target.install_packages,
                "infra_service_user": target.service_user,
            },
            ssh_private_key=key,
        )
        async with deps.locks(f"server:{target.handle}"):
            run = await _run(deps, message, "provision_server", job)
    except InfraError as error:
        log.warning("provisioning refused", error=str(error))
        if target is not None:
            await deps.servers.set_status(target.handle, ServerStatus.ERROR)
        await report_step(deps.progress, message, "failed", "provisioning failed", error=str(error))
        return ProvisionerResult(
            request_id=message.request_id,
            status="error" if isinstance(error, PlaybookError) else "failed",
            error=str(error),
            duration_ms=_elapsed_ms(started),
            server_handle=message.server_handle,
            server_ip=None if target is None else target.host,
            errors=[str(error)],
        )
    redeployed = int((run.report or {}).get("services_redeployed", 0))
    failures = [redact(failure) for failure in run.failures]
    error_text = "; ".join(failures) or None
    log.info("provisioning finished", ok=run.ok, attempts=run.attempts, redeployed=redeployed)
    status = ServerStatus.READY if run.ok else ServerStatus.ERROR
    await deps.servers.set_status(
        target.handle, ServerStatus.UNREACHABLE if run.unreachable else status
    )
    if run.ok:
        await report_step(
            deps.progress, message, "completed", f"{message.server_handle} is provisioned"
        )
    else:
        await report_step(deps.progress, message, "failed", "provisioning failed", error=error_text)
    return ProvisionerResult(
        request_id=message.request_id,
        status="success" if run.ok else "failed",
        error=None if run.ok else error_text,
        duration_ms=_elapsed_ms(started),
        server_handle=message.server_handle,
        server_ip=target.host,
        services_redeployed=redeployed,
        errors=None if run.ok else failures,
    )


async def _deploy_inputs(
    message: AnsibleDeployMessage, deps: InfraDeps, source: RepoSource, modules: list[str]
) -> tuple[dict[str, str], Redactor]:
    """The playbook's secret environment, and a redactor of every resolved secret.

    A `secrets_ref` under which nothing is stored means a project without secrets; a token
    that is needed (a GitHub remote) and missing is an error, and so is a `telegram` module
    without `BOT_TOKEN` among the project's secrets (its bot could not start)."""
    token = await deps.secrets.resolve(message.github_token_ref) if source.needs_token else ""
    try:
        env_text = await deps.secrets.resolve(message.secrets_ref)
    except SecretNotFoundError:
        _log.info("project has no secrets", request_id=message.request_id, ref=message.secrets_ref)
        env_text = ""
    env = parse_env_text(env_text, ref=message.secrets_ref)
    if BOT_MODULE in modules and not env.get(BOT_TOKEN):
        raise InfraError(
            f"the {BOT_MODULE} module needs the project secret {BOT_TOKEN}, and the project "
            f"has none: set it (orchestrator project secret set {message.project_id} "
            f"{BOT_TOKEN}) and deploy again"
        )
    secret_env = {"INFRA_APP_ENV": render_env_text(env), "INFRA_GIT_TOKEN": token}
    return secret_env, Redactor([token, *env.values()])


async def handle_ansible_deploy_message(
    message: AnsibleDeployMessage, deps: InfraDeps
) -> AnsibleDeployResult:
    """Deploy `message.repo_full_name` on `message.server_ip:port` with `deploy_project.yml`."""
    started = time.monotonic()
    log = _log.bind(
        request_id=message.request_id, project_id=message.project_id, server=message.server_ip
    )
    await report_step(
        deps.progress,
        message,
        "started",
        f"deploying {message.project_name} to {message.server_ip}",
    )
    redact = Redactor()

    def failed(error: str, status: Literal["failed", "error"] = "failed") -> AnsibleDeployResult:
        return AnsibleDeployResult(
            request_id=message.request_id,
            status=status,
            error=redact(error),
            duration_ms=_elapsed_ms(started),
            server_ip=message.server_ip,
            port=message.port,
        )

    try:
        if not 0 < message.port < 65536:
            raise InfraError(f"port {message.port} is not a TCP port")
        modules = module_names(message.modules)
        target = await deps.servers.by_address(message.server_ip)
        repo_name, pinned_sha = split_pinned(message.repo_full_name)
        source = repo_source(repo_name, deps.settings)
        if source.local_path is not None and not (source.local_path / "HEAD").exists():
            raise RepositoryNotFoundError(f"repository {repo_name!r} does not exist ({source.url})")
        secret_env, redact = await _deploy_inputs(message, deps, source, modules)
        key = await _ssh_key(deps, target)
        job = PlaybookJob(
            playbook="deploy_project",
            target=target,
            variables={
                **_base_vars(target),
                "infra_app_name": app_name_of(message.project_id),
                "infra_modules": ",".join(modules),
                "infra_repo_url": source.url,
                "infra_ref": pinned_sha or deps.settings.deploy_ref,
                "infra_port": message.port,
                "infra_bind_host": target.bind_host,
                "infra_health_path": deps.settings.health_path,
                "infra_health_timeout_s": deps.settings.health_timeout_s,
                "infra_runtime_site_packages": target.runtime_site_packages,
                "infra_job_id": message.request_id,
            },
            secret_env=secret_env,
            ssh_private_key=key,
        )
        redact = redact.extend([key] if key else [])
        async with deps.locks(app_lock_key(target, message.project_id)):
            run, cancelled = await until_cancelled(
                _run(deps, message, "deploy_project", job),
                task_id=task_of_step(message.request_id),
                source=deps.cancellations,
                poll_s=deps.settings.cancel_poll_s,
            )
            if run is None or cancelled:
                return await _undo_cancelled(message, deps, job, redact, started)
    except InfraError as error:
        text = redact(str(error))
        log.warning("deploy refused", error=text)
        await report_step(deps.progress, message, "failed", "deploy failed", error=text)
        return failed(text, "error" if isinstance(error, PlaybookError) else "failed")
    error_text = redact("; ".join(run.failures)) or None
    # a bot-only project (no web service) has no URL: its health is its processes' state
    serves_web = (run.report or {}).get("web") is not False
    url = target.url(message.port) if serves_web else None
    previous_serves = not run.ok and bool((run.report or {}).get("previous_serves"))
    log.info(
        "deploy finished",
        ok=run.ok,
        attempts=run.attempts,
        exit_code=run.exit_code,
        previous_serves=previous_serves,
        release_correlation_id=(run.report or {}).get("correlation_id"),
    )
    if run.ok:
        done = f"answers at {url}" if url else "runs (its bot is up; no web service)"
        await report_step(deps.progress, message, "completed", f"{message.project_name} {done}")
    else:
        await report_step(deps.progress, message, "failed", "deploy failed", error=error_text)
    limit = deps.settings.output_tail_chars
    return AnsibleDeployResult(
        request_id=message.request_id,
        status="success" if run.ok else "failed",
        error=None if run.ok else error_text,
        duration_ms=_elapsed_ms(started),
        deployed_url=url if run.ok or previous_serves else None,
        server_ip=message.server_ip,
        port=message.port,
        stdout=tail(redact(run.stdout), limit),
        stderr=tail(redact(run.stderr), limit),
        exit_code=run.exit_code,
    )


def _undo_outcome(report: dict[str, Any]) -> str:
    """What a cancelled job left on the server, from `abort_deploy.yml`'s report."""
    if report.get("removed"):
        return "nothing of the project is left on the server (a first deploy)"
    if report.get("restored"):
        state = "runs again" if report.get("running") else "is back (it was not running)"
        return f"the previous release {state}"
    if report.get("released"):
        return "it came too late: the new release had already passed its health check"
    if report.get("running"):
        return "the job had changed nothing on the server; the project runs as before"
    return "the job had changed nothing on the server"


async def _undo_cancelled(
    message: AnsibleDeployMessage,
    deps: InfraDeps,
    job: PlaybookJob,
    redact: Redactor,
    started: float,
) -> AnsibleDeployResult:
    """Undo a deploy job cancelled with its task (`abort_deploy.yml`) and say how it ended."""
    await report_step(
        deps.progress, message, "progress", "task cancelled: undoing the deploy", step="cancelled"
    )
    undo = PlaybookJob(
        playbook="abort_deploy",
        target=job.target,
        variables={
            **_base_vars(job.target),
            **{
                name: job.variables[name]
                for name in ("infra_app_name", "infra_job_id", "infra_health_path")
            },
            "infra_health_timeout_s": deps.settings.health_timeout_s,
        },
        ssh_private_key=job.ssh_private_key,
    )
    run: PlaybookRun | None = None
    try:
        run = await _run(deps, message, "abort_deploy", undo)
    except InfraError as undo_error:
        problem = str(undo_error)
    else:
        problem = "; ".join(run.failures) or f"exit code {run.exit_code}"
    if run is not None and run.ok and run.report is not None:
        running = bool(run.report.get("running"))
        outcome = f"deploy cancelled: {_undo_outcome(run.report)}"
    else:
        running = True  # unknown: never free a port something may still listen on
        outcome = f"deploy cancelled, but undoing it failed: {problem}"
    outcome = redact(outcome)
    _log.info("deploy cancelled", request_id=message.request_id, running=running, error=outcome)
    await report_step(deps.progress, message, "failed", outcome)
    limit = deps.settings.output_tail_chars
    return AnsibleDeployResult(
        request_id=message.request_id,
        status="failed",
        error=outcome,
        duration_ms=_elapsed_ms(started),
        deployed_url=job.target.url(message.port) if running else None,
        server_ip=message.server_ip,
        port=message.port,
        stdout=None if run is None else tail(redact(run.stdout), limit),
        stderr=None if run is None else tail(redact(run.stderr), limit),
    )


async def remove_project(
    project_id: str, server_ip: str, deps: InfraDeps, *, request_id: str = "remove"
) -> RemoveProjectResult:
    """Stop a deployed project and delete its files on the server (`remove_project.yml`)."""
    started = time.monotonic()
    try:
        target = await deps.servers.by_address(server_ip)
        name = app_name_of(project_id)
        job = PlaybookJob(
            playbook="remove_project",
            target=target,
            variables={**_base_vars(target), "infra_app_name": name},
            ssh_private_key=await _ssh_key(deps, target),
        )
        async with deps.locks(app_lock_key(target, project_id)):
            run = await run_with_ssh_retries(
                deps.runner,
                job,
                attempts=deps.settings.ssh_attempts,
                backoff_s=deps.settings.ssh_backoff_s,
                sleep=deps.sleep,
            )
    except InfraError as error:
        return RemoveProjectResult(
            request_id=request_id,
            status="failed",
            error=str(error),
            duration_ms=_elapsed_ms(started),
            project_id=project_id,
            server_ip=server_ip,
        )
    return RemoveProjectResult(
        request_id=request_id,
        status="success" if run.ok else "failed",
        error=None if run.ok else "; ".join(run.failures),
        duration_ms=_elapsed_ms(started),
        project_id=project_id,
        server_ip=server_ip,
        stopped=bool((run.report or {}).get("stopped", False)),
        exit_code=run.exit_code,
    )
