"""Container images built on this machine, with no image registry.

The base image is a minimal Debian root filesystem made by `mmdebstrap` from Debian's
packages (python3, venv, git, CA certificates; no docs, manuals or locales), imported into
the engine with `docker import`. Its tarball is cached outside the working tree, under
`${XDG_CACHE_HOME:-~/.cache}/orchestrator/images/`, named by a hash of its inputs, so a fresh
clone builds it once per machine; the imported image is tagged with the same hash, so an
engine that already holds it skips even the import. The worker image is built from
`services/worker_wrapper/Dockerfile` on that base (the engine's layer cache makes a rebuild
with unchanged inputs take seconds).

    python -m services.worker_manager.images               # every image, timings, sizes
    python -m services.worker_manager.images requirements  # rewrite the images' pins

The orchestrator image (deploy/Dockerfile: `orchestrator run <actor>` per container) is
built the same way on the same base, and the topology's Redis and PostgreSQL images on root
filesystems of Debian's `redis-server` and `postgresql-15` (deploy/redis, deploy/postgres):
no registry is reachable to pull theirs.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
from docker.errors import DockerException, ImageNotFound
from packaging.markers import Marker
from packaging.utils import canonicalize_name

__all__ = [
    "BASE_PACKAGES",
    "BASE_REPOSITORY",
    "ORCHESTRATOR_IMAGE",
    "ORCHESTRATOR_REPOSITORY",
    "SERVICE_PACKAGES",
    "WORKER_BASE_PACKAGES",
    "WORKER_DOCKERFILE",
    "WORKER_IMAGE",
    "WORKER_REPOSITORY",
    "WORKER_REQUIREMENTS",
    "BuildReport",
    "ImageBuildError",
    "base_key",
    "cache_dir",
    "ensure_base_image",
    "ensure_orchestrator_image",
    "ensure_service_image",
    "ensure_worker_image",
    "lock_requirements",
    "orchestrator_requirements",
    "worker_requirements",
]

PROJECT_ROOT = Path(__file__).resolve().parents[2]
WORKER_DOCKERFILE = PROJECT_ROOT / "services" / "worker_wrapper" / "Dockerfile"
WORKER_REQUIREMENTS = PROJECT_ROOT / "services" / "worker_wrapper" / "requirements.txt"
PROJECT_NAME = "codegen-orchestrator"
DEPLOY_DIR = PROJECT_ROOT / "deploy"
ORCHESTRATOR_DOCKERFILE = DEPLOY_DIR / "Dockerfile"
ORCHESTRATOR_REQUIREMENTS = DEPLOY_DIR / "requirements.txt"
ORCHESTRATOR_REPOSITORY = "codegen-orchestrator"
ORCHESTRATOR_IMAGE = f"{ORCHESTRATOR_REPOSITORY}:latest"
SERVICE_PACKAGES = {
    "redis": ("redis-server",),
    "postgres": ("postgresql-15",),
    "prometheus": ("prometheus",),
}
"""The Debian packages of the images of the topology's Redis, PostgreSQL and Prometheus (no
registry to pull theirs from): `codegen-orchestrator-<name>`, from `deploy/<name>/Dockerfile`."""
WORKER_REPOSITORY = "codegen-orchestrator-worker"
WORKER_IMAGE = f"{WORKER_REPOSITORY}:latest"
"""What `make images` tags (DockerSettings.image's default); tests use the content tag."""
WRAPPER_DISTRIBUTIONS = (
    "httpx",
    "opentelemetry-api",
    "opentelemetry-exporter-otlp-proto-http",
    "opentelemetry-sdk",
    "prometheus-client",
    "psutil",
    "pydantic",
    "pydantic-settings",
    "redis",
    "structlog",
)
"""What the wrapper and the modules of `shared` it loads import (the OTLP exporter: a worker
asked to trace exports its spans like the actors do; httpx: the metering relay that prices a
capped Codex run's model responses; the worker image installs
these and what they require, at the versions of uv.lock, not the project's other deps)."""
BASE_REPOSITORY = "codegen-orchestrator-base"
BASE_SUITE = "bookworm"
BASE_PACKAGES = ("python3", "python3-venv", "git", "ca-certificates")
WORKER_BASE_REPOSITORY = "codegen-orchestrator-worker-base"
WORKER_BASE_PACKAGES = (*BASE_PACKAGES, "nodejs")
"""The worker image's root filesystem: the base's packages and Debian's Node (codex's
launcher is a Node script; claude and droid are native executables), so the orchestrator
image, on the plain base, carries no Node."""
AGENT_CLIS_DIR = PROJECT_ROOT / "tools" / "agents"
AGENT_PACKAGES = (
    "@anthropic-ai/claude-code",
    "@factory/cli",
    "@openai/codex",
    "@openai/codex-linux-x64",
)
"""What the worker image copies of `tools/agents/node_modules` (installed on the host by
`make agents` at package-lock.json's pins): claude's and droid's packages hold their native
executables themselves (their `-linux-x64` packages are the same files, hard-linked, and are
left out); codex's launcher finds its executable in `@openai/codex-linux-x64`."""
BASE_PYTHON = "3.11.2"
"""The CPython version of Debian 12's python3 (requirement markers are evaluated for it)."""
_EXCLUDED_PATHS = (
    "/usr/share/doc/*",
    "/usr/share/man/*",
    "/usr/share/info/*",
    "/usr/share/locale/*",
)
_FORMAT = 1
"""Bumped when the way the root filesystem is made changes (a new key, a new build)."""
_MMDEBSTRAP_TIMEOUT_S = 900


class ImageBuildError(RuntimeError):
    """An image could not be built; the message says which step failed and why."""


@dataclass
class BuildReport:
    """What one ensure call did and how long it took."""

    image: str
    action: str
    """`present` (already in the engine), `imported` (from the cached tarball), `built`
    (with how many build steps came from the engine's layer cache)."""
    seconds: float


def cache_dir() -> Path:
    """Where built root filesystems are kept between runs (outside any working tree)."""
    named = os.environ.get("ORCHESTRATOR_IMAGE_CACHE")
    if named:
        return Path(named)
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "orchestrator" / "images"


def _lock_environment() -> dict[str, str]:
    """Marker values of the images' Python: Debian 12's CPython 3.11.2 on Linux."""
    return {
        "python_version": "3.11",
        "python_full_version": BASE_PYTHON,
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": platform.machine(),
        "os_name": "posix",
        "extra": "",
    }


def lock_requirements(roots: list[dict[str, Any]], title: str, command: str) -> str:
    """A hashed `requirements.txt` of `roots` (uv.lock dependency entries: name, maybe
    version, marker, extra) and everything they require, with markers evaluated for the
    base image's Python, at uv.lock's versions and with its wheel hashes."""
    lock = tomllib.loads((PROJECT_ROOT / "uv.lock").read_text(encoding="utf-8"))
    versions: dict[str, list[dict[str, Any]]] = {}
    for entry in lock["package"]:
        versions.setdefault(canonicalize_name(entry["name"]), []).append(entry)
    environment = _lock_environment()
    chosen: dict[str, dict[str, Any]] = {}
    pending = list(roots)
    while pending:
        wanted = pending.pop()
        marker = wanted.get("marker")
        if marker is not None and not Marker(marker).evaluate(environment):
            continue
        name = canonicalize_name(wanted["name"])
        candidates = versions[name]
        if "version" in wanted:
            candidates = [e for e in candidates if e["version"] == wanted["version"]]
        entry = candidates[0]
        for extra in wanted.get("extra", []):
            pending.extend(entry.get("optional-dependencies", {}).get(extra, []))
        if name in chosen:
            continue
        chosen[name] = entry
        pending.extend(entry.get("dependencies", []))
    lines = [f"# {title}, from uv.lock; regenerate with", f"#   {command}"]
    for pinned, entry in sorted(chosen.items()):
        hashes = sorted({str(wheel["hash"]) for wheel in entry.get("wheels", [])})
        lines.append(f"{pinned}=={entry['version']} \\")
        lines.extend(f"    --hash={digest} \\" for digest in hashes[:-1])
        lines.append(f"    --hash={hashes[-1]}")
    return "\n".join(lines) + "\n"


_REQUIREMENTS_COMMAND = "python -m services.worker_manager.images requirements"


def worker_requirements() -> str:
    """`requirements.txt` of the worker image: the wrapper's distributions and everything
    they require (see `lock_requirements`)."""
    roots = [{"name": name} for name in WRAPPER_DISTRIBUTIONS]
    return lock_requirements(roots, "The worker image's Python packages", _REQUIREMENTS_COMMAND)


def orchestrator_requirements() -> str:
    """`deploy/requirements.txt` of the orchestrator image: the project's runtime
    dependencies (not its dev group) and everything they require."""
    lock = tomllib.loads((PROJECT_ROOT / "uv.lock").read_text(encoding="utf-8"))
    [project] = [e for e in lock["package"] if e["name"] == PROJECT_NAME]
    return lock_requirements(
        list(project["dependencies"]),
        "The orchestrator image's Python packages",
        _REQUIREMENTS_COMMAND,
    )


def _mmdebstrap_argv(target: Path, packages: tuple[str, ...] = BASE_PACKAGES) -> list[str]:
    argv = [
        "mmdebstrap",
        "--quiet",
        "--variant=minbase",
        "--format=tar",
        f"--include={','.join(packages)}",
    ]
    argv += [f"--dpkgopt=path-exclude={path}" for path in _EXCLUDED_PATHS]
    argv += [
        '--customize-hook=rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin',
        BASE_SUITE,
        str(target),
    ]
    return argv


def base_key(packages: tuple[str, ...] = BASE_PACKAGES) -> str:
    """A hash of everything the base root filesystem (of `packages`) is made from."""
    inputs = {"format": _FORMAT, "argv": _mmdebstrap_argv(Path("out.tar"), packages)}
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on `path` (concurrent test runs build an image once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _has_image(client: docker.DockerClient, name: str) -> bool:
    try:
        client.images.get(name)
    except ImageNotFound:
        return False
    return True


def _make_rootfs(target: Path, packages: tuple[str, ...] = BASE_PACKAGES) -> None:
    if shutil.which("mmdebstrap") is None:
        raise ImageBuildError("mmdebstrap is not installed (apt-get install mmdebstrap)")
    partial = target.with_suffix(".partial")
    try:
        done = subprocess.run(
            _mmdebstrap_argv(partial, packages),
            capture_output=True,
            text=True,
            timeout=_MMDEBSTRAP_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        partial.unlink(missing_ok=True)
        raise ImageBuildError(f"mmdebstrap took more than {_MMDEBSTRAP_TIMEOUT_S} s") from None
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        raise ImageBuildError(
            f"mmdebstrap failed (exit {done.returncode}): {done.stderr.strip()[-1500:]}"
        )
    partial.replace(target)


def ensure_base_image(
    client: docker.DockerClient,
    packages: tuple[str, ...] = BASE_PACKAGES,
    repository: str = BASE_REPOSITORY,
) -> BuildReport:
    """The base image (a root filesystem of `packages`, named `repository`) in the engine:
    present, imported from the cached root filesystem, or made with mmdebstrap first (and
    cached)."""
    started = time.monotonic()
    key = base_key(packages)
    tag = f"{repository}:{key}"
    cache = cache_dir()
    with _locked(cache / "build.lock"):
        if _has_image(client, tag):
            return BuildReport(tag, "present", time.monotonic() - started)
        prefix = "base" if packages == BASE_PACKAGES else repository
        tarball = cache / f"{prefix}-{key}.tar"
        action = "imported"
        if not tarball.exists():
            _make_rootfs(tarball, packages)
            action = "built"
        client.api.import_image_from_file(
            str(tarball), repository=repository, tag=key, changes=["ENV LANG=C.UTF-8"]
        )
        if not _has_image(client, tag):
            raise ImageBuildError(f"docker import of {tarball} did not produce {tag}")
    return BuildReport(tag, action, time.monotonic() - started)


_WHEEL_PLATFORMS = (
    "manylinux_2_28",
    "manylinux_2_17",
    "manylinux2014",
    "manylinux_2_5",
    "manylinux1",
)
_SOURCE_SUFFIXES = (".py", ".typed", ".json", ".md", ".txt", ".yaml", ".yml", ".toml", ".jinja")


def _pip() -> list[str]:
    """A pip to download wheels with: this interpreter's, the Makefile's tools venv's, or
    the one on PATH."""
    if importlib.util.find_spec("pip") is not None:
        return [sys.executable, "-m", "pip"]
    tools = PROJECT_ROOT / ".tools" / "bin" / "pip"
    if tools.exists():
        return [str(tools)]
    found = shutil.which("pip3") or shutil.which("pip")
    if found is None:
        raise ImageBuildError("no pip to download the worker image's wheels with")
    return [found]


def _pins(requirements: Path = WORKER_REQUIREMENTS) -> dict[str, str]:
    lines = requirements.read_text(encoding="utf-8").splitlines()
    pins = (line.split()[0] for line in lines if "==" in line and not line.startswith("#"))
    return dict(pin.split("==", 1) for pin in pins)


def _cached_wheels(target: Path, requirements: Path = WORKER_REQUIREMENTS) -> dict[str, Path]:
    """The wheels in `target` that match a pin of `requirements`, by distribution name."""
    pins = _pins(requirements)
    found: dict[str, Path] = {}
    for wheel in sorted(target.glob("*.whl")):
        name, version = wheel.name.split("-")[:2]
        if pins.get(canonicalize_name(name)) == version:
            found[canonicalize_name(name)] = wheel
    return found


def _download_wheels(target: Path, requirements: Path = WORKER_REQUIREMENTS) -> None:
    """The worker's wheels, for CPython 3.11 on glibc Linux, into `target` (a cache outside
    the tree: the build itself reaches no index, so it needs no network or CA of the host).
    Nothing is downloaded when every pin already has its wheel there."""
    if len(_cached_wheels(target, requirements)) == len(_pins(requirements)):
        return
    machine = platform.machine()
    argv = [*_pip(), "download", "--quiet", "--no-deps", "--only-binary=:all:"]
    argv += ["--python-version", "3.11", "--implementation", "cp", "--abi", "cp311"]
    for tag in _WHEEL_PLATFORMS:
        argv += ["--platform", f"{tag}_{machine}"]
    argv += ["--dest", str(target), "-r", str(requirements)]
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=600)
    if done.returncode != 0:
        raise ImageBuildError(f"pip download failed: {done.stderr.strip()[-1500:]}")


def _worker_context(
    root: Path,
    dockerfile: Path = WORKER_DOCKERFILE,
    requirements: Path = WORKER_REQUIREMENTS,
    *,
    every_file: bool = False,
) -> None:
    """The build context of the worker image (or of another image of the project's sources):
    Dockerfile, deps/ (requirements, wheels) and src/ (sources; `every_file`: templates and
    migration scripts too, not only the source suffixes the wrapper needs)."""
    wheels = cache_dir() / "wheels"
    _download_wheels(wheels, requirements)
    shutil.copy2(dockerfile, root / "Dockerfile")
    (root / "deps" / "wheels").mkdir(parents=True)
    shutil.copy2(requirements, root / "deps" / "requirements.txt")
    for wheel in _cached_wheels(wheels, requirements).values():
        shutil.copy2(wheel, root / "deps" / "wheels" / wheel.name)
    for package in ("shared", "services"):
        for path in sorted((PROJECT_ROOT / package).rglob("*")):
            relative = path.relative_to(PROJECT_ROOT)
            skip = "__pycache__" in relative.parts or "node_modules" in relative.parts
            wanted = every_file or path.suffix in _SOURCE_SUFFIXES
            if path.is_file() and not skip and wanted:
                (root / "src" / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, root / "src" / relative)


def _agent_clis(root: Path) -> None:
    """The pinned agent CLIs into `root`/agents/node_modules, hard-linked where the host
    allows it (a gigabyte of executables, not copied for every build)."""
    modules = AGENT_CLIS_DIR / "node_modules"
    missing = [name for name in AGENT_PACKAGES if not (modules / name / "package.json").is_file()]
    if missing:
        raise ImageBuildError(
            f"the agent CLIs are not installed in {modules} (missing {', '.join(missing)}): "
            "run `make agents` first"
        )
    for name in AGENT_PACKAGES:
        source = (modules / name).resolve()
        for directory, _dirs, files in os.walk(source):
            for file in files:
                path = Path(directory) / file
                if path.is_symlink():
                    continue
                target = root / "agents" / "node_modules" / name / path.relative_to(source)
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(path, target)
                except OSError:
                    shutil.copy2(path, target)


def _worker_image_context(root: Path) -> None:
    """The worker image's context: the wrapper's (`_worker_context`) and the agent CLIs."""
    _worker_context(root)
    _agent_clis(root)


def _tree_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def ensure_worker_image(client: docker.DockerClient, *extra_tags: str) -> BuildReport:
    """The worker image from the project's Dockerfile on the base image, tagged
    `codegen-orchestrator-worker:<hash of base and build context>` (so test runs of different
    trees sharing an engine never run each other's image) and `extra_tags`; found in the
    engine when present, else built (unchanged layers come from the engine's cache)."""
    base = ensure_base_image(client, WORKER_BASE_PACKAGES, WORKER_BASE_REPOSITORY)
    return _ensure_built(client, WORKER_REPOSITORY, _worker_image_context, base, extra_tags)


def _orchestrator_context(root: Path) -> None:
    """The orchestrator image's context: the worker's layout with deploy/'s Dockerfile and
    requirements, plus the container entrypoint."""
    _worker_context(root, ORCHESTRATOR_DOCKERFILE, ORCHESTRATOR_REQUIREMENTS, every_file=True)
    shutil.copy2(DEPLOY_DIR / "entrypoint.sh", root / "entrypoint.sh")


def ensure_orchestrator_image(client: docker.DockerClient, *extra_tags: str) -> BuildReport:
    """The orchestrator image (`orchestrator run <actor>` per container) from
    deploy/Dockerfile on the base image, tagged by content like the worker image."""
    return _ensure_built(
        client,
        ORCHESTRATOR_REPOSITORY,
        _orchestrator_context,
        ensure_base_image(client),
        extra_tags,
    )


def ensure_service_image(client: docker.DockerClient, name: str, *extra_tags: str) -> BuildReport:
    """The topology's `redis`, `postgres` or `prometheus` image: a root filesystem of
    Debian's packages (SERVICE_PACKAGES) with deploy/<name>/'s Dockerfile and files on top."""
    if name not in SERVICE_PACKAGES:
        known = ", ".join(sorted(SERVICE_PACKAGES))
        raise ImageBuildError(f"no service image {name!r}; known: {known}")
    repository = f"{ORCHESTRATOR_REPOSITORY}-{name}"
    rootfs = ensure_base_image(client, SERVICE_PACKAGES[name], f"{repository}-rootfs")

    def context(root: Path) -> None:
        shutil.copytree(DEPLOY_DIR / name, root, dirs_exist_ok=True)

    return _ensure_built(client, repository, context, rootfs, extra_tags)


def _ensure_built(
    client: docker.DockerClient,
    repository: str,
    make_context: Callable[[Path], None],
    base: BuildReport,
    extra_tags: tuple[str, ...],
) -> BuildReport:
    """The image of `make_context`'s build context on `base`, tagged
    `<repository>:<hash of base and context>` and `extra_tags`; present, or built."""
    started = time.monotonic()
    with _locked(cache_dir() / "build.lock"), tempfile.TemporaryDirectory() as context:
        make_context(Path(context))
        key = hashlib.sha256(f"{base.image}:{_tree_hash(Path(context))}".encode()).hexdigest()
        tag = f"{repository}:{key[:16]}"
        if _has_image(client, tag):
            image = client.images.get(tag)
            for extra in extra_tags:
                image.tag(*extra.rsplit(":", 1))
            return BuildReport(tag, "present", time.monotonic() - started)
        try:
            image, log = client.images.build(
                path=context,
                tag=tag,
                buildargs={"BASE": base.image},
                network_mode="none",
                rm=True,
                forcerm=True,
            )
        except docker.errors.BuildError as exc:
            lines = [str(step.get("stream") or step.get("error") or "") for step in exc.build_log]
            tail = "".join(lines).strip()[-1500:]
            raise ImageBuildError(f"{repository} image build failed: {exc.msg}\n{tail}") from None
        for extra in extra_tags:
            image.tag(*extra.rsplit(":", 1))
    text = "".join(str(step.get("stream", "")) for step in log if isinstance(step, dict))
    steps, cached = text.count("\nStep ") + text.startswith("Step "), text.count("Using cache")
    action = f"built, {cached} of {steps} steps from the layer cache"
    return BuildReport(tag, action, time.monotonic() - started)


def main(argv: list[str] | None = None) -> int:
    """Build (or find) the base and worker images and print what was done and how long;
    with `requirements`, rewrite the worker image's requirements.txt instead."""
    args = sys.argv[1:] if argv is None else argv
    if args == ["requirements"]:
        WORKER_REQUIREMENTS.write_text(worker_requirements(), encoding="utf-8")
        ORCHESTRATOR_REQUIREMENTS.write_text(orchestrator_requirements(), encoding="utf-8")
        return 0
    try:
        client = docker.from_env()
    except DockerException as exc:
        where = os.environ.get("DOCKER_HOST") or "the default socket (/var/run/docker.sock)"
        print(  # noqa: T201
            f"error: no Docker engine answers at {where} ({exc}); start one, or point "
            "DOCKER_HOST at the tests' own engine (docs/docker.md)",
            file=sys.stderr,
        )
        return 1
    steps: list[Callable[[], BuildReport]] = [
        lambda: ensure_base_image(client),
        lambda: ensure_worker_image(client, WORKER_IMAGE),
        lambda: ensure_orchestrator_image(client, ORCHESTRATOR_IMAGE),
        *(
            (
                lambda name=name: ensure_service_image(
                    client, name, f"{ORCHESTRATOR_REPOSITORY}-{name}:latest"
                )
            )
            for name in sorted(SERVICE_PACKAGES)
        ),
    ]
    try:
        for step in steps:
            report = step()
            size = client.images.get(report.image).attrs.get("Size", 0) / 1e6
            print(f"{report.image}: {report.action} in {report.seconds:.1f} s, {size:.0f} MB")  # noqa: T201
    except ImageBuildError as exc:
        print(f"error: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    finally:
        client.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
