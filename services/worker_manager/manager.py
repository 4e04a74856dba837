"""The worker-manager's operations: create a worker, relay a message to it, delete it.

A worker whose create command asks for an API key by reference (`api_keys.py`) gets it
minted at start, in its environment only, and revoked whenever it ends (deleted, failed,
stopped idle, replaced).

Failures a requester should hear about raise `WorkerManagerError` subclasses with a clear
message; the handlers turn them into unsuccessful responses.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from services.worker_manager import workspace as files
from services.worker_manager.adapters import adapter_env, choose_adapter
from services.worker_manager.agent_env import (
    agent_account,
    agent_env,
    hand_over,
    with_orchestrator_on_path,
)
from services.worker_manager.api_keys import ApiKeyRequest, WorkerApiKeys, api_key_request
from services.worker_manager.errors import (
    InvalidWorkerConfigError,
    UnknownWorkerError,
    WorkerDiedError,
    WorkerManagerError,
    WorkerStartError,
    WorkerUnavailableError,
)
from services.worker_manager.keys import (
    bind_key,
    create_request_key,
    deleting_key,
    registry_key,
    sent_request_key,
    started_key,
)
from services.worker_manager.mirrors import RepositoryMirrors
from services.worker_manager.pool import WarmPool
from services.worker_manager.redis_users import WorkerRedisUsers
from services.worker_manager.registry import WARM_STATUSES, WorkerRecord, WorkerRegistry, as_text
from services.worker_manager.runtime import WorkerRuntime, WorkerSpec
from services.worker_manager.settings import WorkerManagerSettings
from shared import registry as queues
from shared.contracts import (
    CreateWorkerCommand,
    ProgressEvent,
    SendMessageCommand,
    WorkerInputMessage,
    WorkerOutputMessage,
)
from shared.messaging import Bus, MessagingError, RequestTimeoutError
from shared.messaging.cancel import wait_event

__all__ = ["WorkerManager"]

log = structlog.get_logger("services.worker_manager")

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_REPLY_MARGIN_S = 30.0
_KEY_TTL_S = 7 * 86400
_STOP_WAIT_S = 2.0
_KEPT_ANSWERS_MAX = 1000
_DELETING_TTL_S = 600
_STARTED_WAIT_S = 0.25
"""The longest blocking pop of a bound warm wrapper's `started` list between two looks at
its record and process (its word wakes the pop at once)."""


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:40] or "worker"


@dataclass
class WorkerManager:
    """Creates, relays to and deletes workers; owns their registry records."""

    settings: WorkerManagerSettings
    bus: Bus
    redis: aioredis.Redis
    runtime: WorkerRuntime
    redis_url: str
    api_keys: WorkerApiKeys
    registry: WorkerRegistry = field(init=False)
    redis_users: WorkerRedisUsers = field(init=False)
    pool: WarmPool = field(init=False)
    mirrors: RepositoryMirrors = field(init=False)
    busy: set[str] = field(default_factory=set)
    """Workers being created or deleted right now (the monitor leaves them alone)."""
    repo_of: dict[str, str] = field(default_factory=dict)
    """Workers this manager created with a repository → its URL (to freshen the next
    prepared clone of it when they are deleted)."""

    def __post_init__(self) -> None:
        self.registry = WorkerRegistry(self.redis, record_ttl_s=self.settings.record_ttl_s)
        self.redis_users = WorkerRedisUsers(self.redis)
        self.pool = WarmPool(self)
        self.mirrors = RepositoryMirrors(self.settings.data_dir / "mirrors")

    async def release(self, worker_id: str) -> None:
        """Revoke what was issued to a worker that ends: its API key and its Redis user."""
        await self.api_keys.release(worker_id)
        if self.settings.redis_acl:
            with contextlib.suppress(RedisError):
                await self.redis_users.release(worker_id)

    # create -------------------------------------------------------------------------------

    async def create(self, command: CreateWorkerCommand) -> str:
        """Start a worker and wait until its wrapper takes input; answer its id."""
        started = time.monotonic()
        claimed = await self.redis.get(create_request_key(command.request_id))
        if claimed is not None:
            existing = await self._created_before(as_text(claimed))
            if existing is not None:
                return existing
        config = command.config
        if not _NAME.match(config.name):
            raise InvalidWorkerConfigError(
                f"invalid worker name {config.name!r}: use 1-63 letters, digits, '.', '_', '-'"
            )
        adapter = choose_adapter(self.settings, config.agent)
        account = agent_account(self.settings)
        key_request = api_key_request(command.context)
        context = command.context
        source = files.process_env()
        env = files.allowlisted_env(
            source,
            self.settings.env_allowlist,
            {**agent_env(self.settings, adapter, source), **config.env_vars},
        )
        env["PATH"] = with_orchestrator_on_path(env.get("PATH"))
        warm: WorkerRecord | None = None
        if (
            self.pool.enabled
            and not config.mount_session_volume
            and self.runtime.can_pool(context.get("repo_url"))
        ):
            # every check that can refuse the command is behind us: a claimed worker is bound
            warm = await self.pool.take(config.agent, context.get("profile", "developer"))
        claimed_at = time.monotonic()
        worker_id = (
            warm.worker_id if warm is not None else f"{_slug(config.name)}-{uuid.uuid4().hex[:8]}"
        )
        worker_dir = self.settings.data_dir / worker_id
        session_volume = f"session-{_slug(config.name)}" if config.mount_session_volume else None
        if session_volume:
            await self._refuse_shared_volume(config.name)
            root = self.settings.data_dir / "sessions" / session_volume
            workspace, session_dir = root / "workspace", root / "state"
        else:
            workspace, session_dir = worker_dir / "workspace", worker_dir / "session"
        record = WorkerRecord(
            worker_id=worker_id,
            name=config.name,
            agent=config.agent,
            adapter=adapter,
            runtime=self.runtime.name,
            manager_id=self.settings.manager_id,
            profile=context.get("profile", "developer"),
            owner=context.get("owner", ""),
            task_id=context.get("task_id", ""),
            request_id=command.request_id,
            workspace=str(workspace),
            session_dir=str(session_dir),
            keep_session=config.mount_session_volume,
            runtime_ref=warm.runtime_ref if warm is not None else "",
            created_at=time.time(),
            last_activity_at=time.time(),
        )
        self.busy.add(worker_id)
        try:
            if warm is not None:
                await self._bind_warm(
                    command, record, env, key_request, steps={"claim": claimed_at - started}
                )
                self._prepare_next_clone(worker_id, context)
                return worker_id
            await asyncio.to_thread(
                self._prepare_files, record, workspace, session_dir, context, config.capabilities
            )
            if account is not None:
                home = await asyncio.to_thread(hand_over, workspace, session_dir, account)
                env["HOME"] = str(home.resolve())
            env.update(self._wrapper_env(record, adapter, workspace, session_dir, context))
            # the wrapper's traces join the system's (its agent never sees these variables)
            env.update({k: v for k, v in source.items() if k.startswith("OTEL_")})
            env["AGENT_CAPABILITIES"] = ",".join(config.capabilities)
            await self.registry.put(record, request=(command.request_id, _KEY_TTL_S))
            try:
                if key_request is not None:  # minted once the record exists (see the sweep)
                    env[key_request.env_name] = await self.api_keys.issue(worker_id, key_request)
                if self.settings.redis_acl:  # the wrapper's own ACL user (redis_users.py)
                    env["WORKER_REDIS_URL"] = await self.redis_users.issue(
                        worker_id, context.get("task_id"), env["WORKER_REDIS_URL"]
                    )
                spec = WorkerSpec(
                    worker_id=worker_id,
                    manager_id=self.settings.manager_id,
                    env=env,
                    worker_dir=worker_dir,
                    workspace=workspace,
                    session_dir=session_dir,
                    session_volume=session_volume,
                    limits=self.settings.limits,
                )
                ref = await self.runtime.start(spec)
                await self.registry.update(worker_id, runtime_ref=ref)
            except WorkerStartError as exc:
                await self.registry.finish(worker_id, "failed", error=str(exc))
                await self.release(worker_id)
                raise
            try:
                await self._wait_ready(worker_id, ref)
            except WorkerStartError:  # failed (a worker cut off by a restart is adopted)
                await self.release(worker_id)
                raise
        finally:
            self.busy.discard(worker_id)
        log.info("worker_created", worker_id=worker_id, adapter=adapter, agent=config.agent)
        self._prepare_next_clone(worker_id, context)
        return worker_id

    def _prepare_next_clone(self, worker_id: str, context: dict[str, str]) -> None:
        """Once a create answered, prepare the next clone of its repository (mirrors.py)."""
        repo_url = context.get("repo_url")
        # a runtime that mounts the workspace at start clones in place (no prepared clone)
        if repo_url and self.settings.mirror_repos and not self.runtime.mounts_workspace:
            self.repo_of[worker_id] = repo_url
            self.mirrors.prepare_soon(repo_url)

    async def _bind_warm(
        self,
        command: CreateWorkerCommand,
        record: WorkerRecord,
        env: dict[str, str],
        key_request: ApiKeyRequest | None,
        *,
        steps: dict[str, float] | None = None,
    ) -> None:
        """Give a claimed warm worker its task: files, record, scoped credentials, binding.
        `steps` gets how long each step took (s), logged with `worker_created`."""
        worker_id, context = record.worker_id, command.context
        steps = {} if steps is None else steps
        mark = time.monotonic()

        def step(name: str) -> None:
            nonlocal mark
            now = time.monotonic()
            steps[name] = now - mark
            mark = now

        workspace, session_dir = Path(record.workspace), Path(record.session_dir)
        account = agent_account(self.settings)

        def prepare() -> None:  # in a thread, while the wrapper is bound
            self._prepare_files(
                record, workspace, session_dir, context, command.config.capabilities
            )
            if account is not None:
                hand_over(workspace, session_dir, account)

        # The workspace is made while the wrapper takes its binding (and imports, connects);
        # the wrapper reports `running` only once released, after the workspace is ready.
        preparing = asyncio.ensure_future(asyncio.to_thread(prepare))
        released = False
        try:
            try:
                if account is not None:  # hand_over's answer, known beforehand
                    env["HOME"] = str((session_dir / "home").resolve())
                env.update(
                    self._wrapper_env(record, record.adapter, workspace, session_dir, context)
                )
                env["AGENT_CAPABILITIES"] = ",".join(command.config.capabilities)
                await self.registry.put(record, request=(command.request_id, _KEY_TTL_S))
                if key_request is not None:
                    env[key_request.env_name] = await self.api_keys.issue(worker_id, key_request)
                if self.settings.redis_acl:  # the same user, now allowed its task's stream too
                    env["WORKER_REDIS_URL"] = await self.redis_users.issue(
                        worker_id, context.get("task_id"), env["WORKER_REDIS_URL"]
                    )
                env["WORKER_READY_KEY"] = bind_key(worker_id)
                env["WORKER_STARTED_KEY"] = started_key(worker_id)
                if self.runtime.mounts_workspace:  # the binding hands the files over: wait for them
                    await asyncio.wait({preparing})
                    preparing.result()
                step("credentials")
                # files ready already (none to clone, or quicker than the above): the binding
                # releases the worker too, one round trip instead of two
                released = preparing.done() and not preparing.cancelled()
                released = released and preparing.exception() is None
                await self.pool.bind(record, env, go=released)
                step("bind")
            finally:  # never clean up a worker whose files are still being written
                await asyncio.wait({preparing})
            preparing.result()
            step("files")
            if not released:
                await self.pool.release(worker_id)
            # a released wrapper reports `running` within milliseconds, and says so
            started = started_key(worker_id)
            await self._wait_ready(
                worker_id, record.runtime_ref, poll_s=_STARTED_WAIT_S, started=started
            )
            step("ready")
        except Exception as exc:  # a claimed worker is never left half-bound
            detail = str(exc) if isinstance(exc, WorkerManagerError) else f"bind failed: {exc!r}"
            with contextlib.suppress(WorkerManagerError, RedisError):
                current = await self.registry.get(worker_id)
                if current is not None and current.is_live:
                    await self.runtime.stop(record.runtime_ref, grace_s=0)
                    await self.registry.finish(worker_id, "failed", error=detail)
                await self.release(worker_id)
            raise
        log.info(
            "worker_created",
            worker_id=worker_id,
            adapter=record.adapter,
            warm=True,
            **{f"{name}_ms": round(seconds * 1000, 1) for name, seconds in steps.items()},
        )

    async def _refuse_shared_volume(self, name: str) -> None:
        for other in await self.registry.active():
            if other.is_live and other.keep_session and other.name == name:
                raise InvalidWorkerConfigError(
                    f"the session volume of {name!r} is in use by worker {other.worker_id}"
                )

    def _prepare_files(
        self,
        record: WorkerRecord,
        workspace: Path,
        session_dir: Path,
        context: dict[str, str],
        capabilities: list[str],
    ) -> None:
        repo_url = context.get("repo_url")
        if repo_url and not (workspace / ".git").exists():
            workspace.parent.mkdir(parents=True, exist_ok=True)
            branch, base = context.get("branch"), context.get("base_branch")
            prepared = self.settings.mirror_repos and not self.runtime.mounts_workspace
            if prepared and self.mirrors.claim_prepared(repo_url, workspace):
                # a clone made after the previous task of this repository: fetch what is new
                files.update_prepared_clone(
                    repo_url, workspace, branch, files.process_env(), base=base
                )
            else:
                mirror = self.mirrors.refreshed(repo_url) if self.settings.mirror_repos else None
                files.clone_repository(
                    repo_url, workspace, branch, files.process_env(), base=base, mirror=mirror
                )
        workspace.mkdir(parents=True, exist_ok=True)
        session_dir.mkdir(parents=True, exist_ok=True)
        files.write_instructions(
            workspace, record.adapter, record.profile, context.get("instructions"), capabilities
        )

    def _wrapper_env(
        self,
        record: WorkerRecord,
        adapter: str,
        workspace: Path,
        session_dir: Path,
        context: dict[str, str],
    ) -> dict[str, str]:
        env = adapter_env(self.settings, adapter)
        env.update(
            {
                "WORKER_ID": record.worker_id,
                "WORKER_REDIS_URL": self.redis_url,
                "WORKER_REGISTRY_KEY": registry_key(record.worker_id),
                "WORKER_WORKSPACE": str(workspace.resolve()),
                "WORKER_SESSION_DIR": str(session_dir.resolve()),
                "WORKER_KILL_GRACE_S": str(min(self.settings.stop_grace_s, 5.0)),
                "WORKER_PROFILE": record.profile,
            }
        )
        if context.get("task_id"):
            env["WORKER_TASK_ID"] = context["task_id"]
        if context.get("month_budget_usd"):  # the user's monthly cap (langgraph asks the API)
            env["WORKER_MONTH_BUDGET_USD"] = context["month_budget_usd"]
            env["WORKER_MONTH_SPENT_USD"] = context.get("month_spent_usd") or "0"
        return env

    async def _created_before(self, worker_id: str) -> str | None:
        """The worker an earlier handling of the same create command started, once it takes
        input; None when there is none to give (never started, failed, stopped): a new one is
        made. The earlier handling may have been cut off at any point (its manager killed;
        the command reclaimed here): a worker still `starting` is waited for, not answered
        at once, so the requester never gets a worker that will not take its input."""
        deadline = time.monotonic() + self.settings.start_timeout_s
        while True:
            record = await self.registry.get(worker_id)
            if record is None or not record.is_live:
                return None
            if record.status in ("running", "busy"):
                return worker_id
            if record.runtime_ref and not await self.runtime.is_alive(record.runtime_ref):
                detail = (await self.runtime.exit_info(record.runtime_ref)).detail
                await self.mark_failed(record, f"exited while starting: {detail}")
                return None
            if time.monotonic() >= deadline:
                if record.runtime_ref:
                    await self.runtime.stop(record.runtime_ref, grace_s=0)
                error = (
                    f"worker {worker_id} was not ready within {self.settings.start_timeout_s:g} s"
                )
                await self.mark_failed(record, error)
                return None
            await asyncio.sleep(0.05)

    async def _wait_ready(
        self, worker_id: str, ref: str, *, poll_s: float = 0.05, started: str | None = None
    ) -> None:
        """Until the worker reports `running`: its record looked at every `poll_s`, or, with
        `started` (a bound warm wrapper pushes onto that list as it reports), a blocking pop
        of that list between the looks, which wakes at once."""
        deadline = time.monotonic() + self.settings.start_timeout_s
        while (left := deadline - time.monotonic()) > 0:
            record = await self.registry.get(worker_id)
            if record is not None and record.status in ("running", "busy"):
                return
            if not await self.runtime.is_alive(ref):
                detail = (await self.runtime.exit_info(ref)).detail
                await self.registry.finish(worker_id, "failed", error=detail)
                raise WorkerStartError(f"worker {worker_id} exited while starting: {detail}")
            if started is None:
                await asyncio.sleep(poll_s)
            elif await self.redis.blpop([started], timeout=min(poll_s, left)) is not None:
                return  # pushed right after `running` was written, in the same script
        await self.runtime.stop(ref, grace_s=0)
        error = f"worker {worker_id} was not ready within {self.settings.start_timeout_s:g} s"
        await self.registry.finish(worker_id, "failed", error=error)
        raise WorkerStartError(error)

    # send_message -------------------------------------------------------------------------

    async def live_record(self, worker_id: str) -> WorkerRecord:
        """The record of a worker that can take input, or a clear error."""
        record = await self.registry.get(worker_id)
        if record is None:
            raise UnknownWorkerError(f"unknown worker {worker_id!r}")
        if not record.is_live:
            reason = f": {record.error}" if record.error else ""
            raise WorkerUnavailableError(f"worker {worker_id} is {record.status}{reason}")
        return record

    async def send(self, command: SendMessageCommand) -> WorkerOutputMessage:
        """Relay the message to the worker and wait for its answer (or its death)."""
        if command.timeout <= 0:
            raise InvalidWorkerConfigError("timeout must be a positive number of seconds")
        record = await self.live_record(command.worker_id)
        await self.registry.touch(record.worker_id)
        input_stream = queues.get("worker:{id}:input").format(id=record.worker_id)
        output_stream = queues.get("worker:{id}:output").format(id=record.worker_id)
        sent_key = sent_request_key(command.request_id)
        if await self.redis.get(sent_key) is None:
            message = WorkerInputMessage(
                request_id=command.request_id, prompt=command.message, timeout=command.timeout
            )
            # the answers to earlier messages were relayed (a requester sends one message
            # at a time to a worker): only this one's is kept from now on
            with contextlib.suppress(MessagingError, RedisError):
                await self._drop_answers(output_stream, keep=command.request_id)
            entry_id = await self.bus.publish(input_stream, message)
            await self.redis.set(sent_key, entry_id, ex=_KEY_TTL_S)
        log.info("message_relayed", worker_id=record.worker_id, request_id=command.request_id)
        # The answer is read, not consumed: it stays in the worker's output stream until the
        # next message (above) or the worker's deletion. A command handled again (its manager
        # killed after reading the answer, before its response or its acknowledgement; the
        # command reclaimed by another replica) then finds the answer at once and relays it
        # again, where a consumed answer would have left it waiting for one that never comes.
        # Read from the stream's start: an input published twice (a kill between the publish
        # and the key above) is answered once, perhaps before the second publish.
        reply = asyncio.create_task(
            self.bus.wait_reply(
                output_stream,
                command.request_id,
                timeout_s=command.timeout + _REPLY_MARGIN_S,
                consume=False,
            )
        )
        finished = asyncio.Event()
        watcher = asyncio.create_task(self._watch_death(record, finished))
        try:
            done, _ = await asyncio.wait({reply, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if reply in done:
                try:
                    output = reply.result()
                except RequestTimeoutError:
                    raise WorkerUnavailableError(
                        f"no answer from worker {record.worker_id} within "
                        f"{command.timeout + _REPLY_MARGIN_S:g} s"
                    ) from None
                assert isinstance(output, WorkerOutputMessage)
                log.info("worker_answered", worker_id=record.worker_id, status=output.status)
                await self.registry.touch(record.worker_id)
                return output
            raise WorkerDiedError(watcher.result())
        finally:
            # a cancellation that lands inside a Redis call can be absorbed (redis-py 8 on
            # Python 3.11): the watcher also stops on `finished`, and nobody waits forever
            finished.set()
            for task in (reply, watcher):
                task.cancel()
            await asyncio.wait({reply, watcher}, timeout=_STOP_WAIT_S)

    async def _drop_answers(self, output_stream: str, *, keep: str) -> None:
        """Delete the answers in a worker's output stream but those to `keep`."""
        transport = self.bus.transport
        drop = []
        for entry in await transport.revrange(output_stream, count=_KEPT_ANSWERS_MAX):
            try:
                payload = json.loads((entry.fields or {}).get("payload") or "{}")
            except ValueError:
                payload = {}
            if not isinstance(payload, dict) or payload.get("request_id") != keep:
                drop.append(entry.entry_id)
        if drop:
            await transport.delete(output_stream, drop)

    async def _watch_death(self, record: WorkerRecord, finished: asyncio.Event) -> str:
        """Return (with an account of it) once the worker is dead or no longer live.

        Its process is watched through the runtime, which wakes this at its exit (the local
        one without polling at all); its record, changed by others, is read every
        `record_poll_s` and at the exit."""
        ref = record.runtime_ref
        while not finished.is_set():
            if ref:
                exited = await self.runtime.wait_exit(
                    ref, timeout_s=self.settings.record_poll_s, poll_s=self.settings.liveness_poll_s
                )
            else:
                exited = False
                await wait_event(finished, self.settings.record_poll_s)
            if finished.is_set():
                break
            current = await self.registry.get(record.worker_id)
            if current is None or not current.is_live:
                if current is not None and current.status == "failed":
                    return (
                        f"worker {record.worker_id} died while handling the request: "
                        f"{current.error or 'no detail'}"
                    )
                status = current.status if current else "gone"
                return f"worker {record.worker_id} was {status} while handling the request"
            ref = current.runtime_ref or ref
            if exited and ref and not await self.runtime.is_alive(ref):
                detail = (await self.runtime.exit_info(ref)).detail
                await self.mark_failed(current, detail)
                await self.runtime.stop(ref, grace_s=0)  # whatever it left behind
                return f"worker {record.worker_id} died while handling the request: {detail}"
        return "the request finished"

    async def mark_failed(self, record: WorkerRecord, detail: str) -> bool:
        """Mark a live worker failed and report it (log; progress event of its task)."""
        if not await self.registry.fail_if_live(record.worker_id, detail):
            return False  # stopped or failed by someone else meanwhile
        log.error("worker_failed", worker_id=record.worker_id, error=detail)
        await self.release(record.worker_id)
        if record.task_id:
            event = ProgressEvent(
                type="progress",
                request_id=record.request_id or record.worker_id,
                task_id=record.task_id,
                message=f"worker {record.worker_id} failed",
                current_step="worker",
                error=detail[:1000],
            )
            with contextlib.suppress(MessagingError, RedisError):
                await self.bus.progress(record.task_id, event)
        return True

    async def being_deleted(self, worker_id: str) -> bool:
        """True while this manager, or another replica, deletes the worker."""
        if worker_id in self.busy:
            return True
        return bool(await self.redis.exists(deleting_key(worker_id)))

    async def is_live(self, worker_id: str) -> bool:
        """True while a worker is being created or deleted here, or its record is live."""
        if worker_id in self.busy:
            return True
        record = await self.registry.get(worker_id)
        return record is not None and (record.is_live or record.status in WARM_STATUSES)

    # delete -------------------------------------------------------------------------------

    async def delete(self, worker_id: str, *, reason: str = "") -> None:
        """Stop the worker gracefully, kill its tree, clean its files (not a kept session)."""
        record = await self.registry.get(worker_id)
        if record is None:
            raise UnknownWorkerError(f"unknown worker {worker_id!r}")
        self.busy.add(worker_id)
        deleting = deleting_key(worker_id)
        try:
            # seen by every replica's monitor (the owner's included): this stop is no death
            await self.redis.set(deleting, self.settings.manager_id, ex=_DELETING_TTL_S)
            if record.runtime_ref:
                await self.runtime.stop(record.runtime_ref, grace_s=self.settings.stop_grace_s)
            if record.status != "failed":
                await self.registry.finish(worker_id, "stopped", error=reason)
            await self.release(worker_id)
            # its last answer (kept for a send handled again, see `send`) and its input: a
            # finished worker's streams would otherwise stay in Redis for good, one pair a task
            with contextlib.suppress(RedisError):
                await self.redis.delete(
                    queues.get("worker:{id}:output").format(id=worker_id),
                    queues.get("worker:{id}:input").format(id=worker_id),
                )
            await asyncio.to_thread(files.remove_tree, self.settings.data_dir / worker_id)
        finally:
            self.busy.discard(worker_id)
            with contextlib.suppress(RedisError):
                await self.redis.delete(deleting)
        repo_url = self.repo_of.pop(worker_id, None)
        if repo_url is not None:  # what its task pushed, fetched off the next create's path
            self.mirrors.freshen_soon(repo_url)
        log.info("worker_deleted", worker_id=worker_id, reason=reason or "delete command")
