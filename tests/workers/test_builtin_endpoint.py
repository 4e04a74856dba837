"""The built-in agent adds "/NAME" endpoints to a real backend scaffold, and nothing else."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from services.langgraph.graphs.engineering import spec_prompt
from services.langgraph.graphs.state import FlowState
from services.scaffolder.render import CopierRenderer, render_project
from services.scaffolder.settings import TEMPLATES_DIR
from services.worker_wrapper.agents import AgentResult, BuiltinAgent
from services.worker_wrapper.agents.builtin_endpoint import (
    DEFAULT_GREETING,
    MAX_TEXT_CHARS,
    ROUTES_MARKER,
    EndpointRefused,
    EndpointSpec,
    default_text,
    parse_endpoint_spec,
)
from shared.redis_server import free_port
from tests.workers.helpers import git
from tests.workers.test_agents import Recorder, request

_RUN_TIMEOUT_S = 100.0


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real scaffold of the backend template (copied by each test)."""
    dest = tmp_path_factory.mktemp("scaffold") / "project"
    renderer = CopierRenderer(timeout_s=120)
    try:
        asyncio.run(
            render_project(
                dest,
                renderer=renderer,
                templates_dir=TEMPLATES_DIR,
                modules=["backend"],
                project_name="Demo Shop",
                repo_full_name="acme/demo-shop",
            )
        )
    finally:
        renderer.close()
    return dest


@pytest.fixture
def project(tmp_path: Path, rendered: Path) -> tuple[Path, Path]:
    """(clone, bare remote): the scaffold pushed to `main`, the clone on `task/t1`."""
    remote, clone = tmp_path / "remote.git", tmp_path / "clone"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(remote))
    git(tmp_path, "clone", "-q", str(remote), str(clone))
    shutil.copytree(rendered, clone, dirs_exist_ok=True)
    git(clone, "add", "-A")
    git(clone, "commit", "-q", "-m", "scaffold")
    git(clone, "push", "-q", "origin", "HEAD:main")
    git(clone, "checkout", "-q", "-b", "task/t1")
    return clone, remote


def _prompt(spec: str) -> str:
    """The prompt the engineering flow sends the developer agent for `spec`."""
    state = FlowState(repo_full_name="acme/demo-shop", branch="task/t1", base_branch="main")
    state["spec"] = spec
    return spec_prompt(state)


async def _ask(clone: Path, spec: str, request_id: str = "r1") -> AgentResult:
    result = await BuiltinAgent().run(
        request(clone, _prompt(spec), request_id=request_id, timeout_s=30.0), Recorder()
    )
    assert result.status == "success", result.error
    assert result.response is not None
    return result


def _module_env(**extra: str) -> dict[str, str]:
    """Our environment without pytest's variables; the module's tests load no plugins."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_")}
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    env.update(extra)
    return env


def _make_test(module: Path) -> tuple[int, str]:
    """The module's own `make test`, with our interpreter: (exit status, output)."""
    done = subprocess.run(
        ["make", "test", f"PYTHON={sys.executable}"],
        cwd=module, env=_module_env(), capture_output=True, text=True, timeout=_RUN_TIMEOUT_S,
    )  # fmt: skip
    return done.returncode, done.stdout + done.stderr


def _serve_and_get(module: Path, paths: list[str]) -> dict[str, tuple[int, object]]:
    """Run the module's app with uvicorn on a free port; (status, JSON) of GET each path."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1",
         "--port", str(port)],
        cwd=module, env=_module_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            while True:
                try:
                    client.get("/health")
                    break
                except httpx.TransportError:
                    assert process.poll() is None, "the app exited"
                    assert time.monotonic() < deadline, "the app never answered"
                    time.sleep(0.2)
            answers: dict[str, tuple[int, object]] = {}
            for path in paths:
                response = client.get(path)
                answers[path] = (response.status_code, response.json())
            return answers
    finally:
        process.terminate()
        process.wait(timeout=10)


def _head_files(clone: Path) -> list[str]:
    return sorted(git(clone, "show", "--name-only", "--format=", "HEAD").splitlines())


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("add a /hello endpoint", EndpointSpec("hello", default_text("hello"))),
        ("Add a /hello endpoint.", EndpointSpec("hello", default_text("hello"))),
        ("a /hello endpoint that greets the caller", EndpointSpec("hello", DEFAULT_GREETING)),
        ("develop a /hello endpoint that greets you", EndpointSpec("hello", DEFAULT_GREETING)),
        ("add a /bye endpoint that returns Goodbye!", EndpointSpec("bye", "Goodbye!")),
        ("create a GET /v2_x route which says 'hi there'", EndpointSpec("v2_x", "hi there")),
        ('add /a-b endpoint that responds with "x"', EndpointSpec("a-b", "x")),
        ("add a /t endpoint that returns  two\nlines ", EndpointSpec("t", "two\nlines")),
        ("add a /hello endpoint\n\nRepository: x/y.", EndpointSpec("hello", "Hello from /hello!")),
    ],
)  # fmt: skip
def test_grammar_reads_the_documented_forms(prompt: str, expected: EndpointSpec) -> None:
    """Each documented form of the grammar parses to its NAME and TEXT."""
    assert parse_endpoint_spec(prompt) == expected


def test_the_documented_examples_hold() -> None:
    """Each example of docs/builtin-agent.md parses to the answer the doc shows."""
    doc = (Path(__file__).parents[2] / "docs" / "builtin-agent.md").read_text(encoding="utf-8")
    block = doc.split("Examples", 1)[1].split("```")[1]
    examples = [line.split("→") for line in block.strip().splitlines()]
    assert len(examples) == 4
    for spec, answer in examples:
        parsed = parse_endpoint_spec(spec.strip())
        if answer.strip().startswith("refused"):
            assert isinstance(parsed, EndpointRefused), spec
        else:
            assert isinstance(parsed, EndpointSpec), spec
            assert json.loads(answer) == {"message": parsed.text}


@pytest.mark.parametrize(
    "prompt",
    [
        "refactor the database layer",
        "add a health endpoint",
        "add a /x endpoint that computes primes",
        "add a /x endpoints",
        "Repository: x/y.\n\nadd a /hello endpoint",
        "",
    ],
)
def test_grammar_ignores_other_specs(prompt: str) -> None:
    """Specs outside the grammar (also ones that only mention it later) are not endpoints."""
    assert parse_endpoint_spec(prompt) is None


@pytest.mark.parametrize(
    ("prompt", "reason"),
    [
        ("add a /Hello endpoint", "not a safe endpoint path"),
        ('add a /a"b endpoint', "not a safe endpoint path"),
        ("add a /$(touch pwned) endpoint", "not a safe endpoint path"),
        ("add a /../etc endpoint", "not a safe endpoint path"),
        ("add a /a\nb endpoint", "not a safe endpoint path"),
        ("add a / endpoint", "not a safe endpoint path"),
        ("add a /" + "a" * 65 + " endpoint", "not a safe endpoint path"),
        ("add a /x endpoint that returns " + "y" * (MAX_TEXT_CHARS + 1), "at most 500"),
        ("add a /x endpoint that returns \ud800", "not valid Unicode"),
    ],
)
def test_grammar_refuses_unsafe_names_and_long_texts(prompt: str, reason: str) -> None:
    """A NAME that is not a safe path segment, or a TEXT too long, is refused with the reason."""
    refused = parse_endpoint_spec(prompt)
    assert isinstance(refused, EndpointRefused)
    assert reason in refused.reason


@pytest.mark.slow
async def test_endpoints_are_added_tested_served_and_never_duplicated(
    project: tuple[Path, Path],
) -> None:
    """/hello, then /bye beside it, then /hello again: tests pass, both answer over HTTP, once."""
    clone, remote = project
    backend = clone / "backend"
    main = backend / "app" / "main.py"

    first = await _ask(clone, "a /hello endpoint that greets the caller", "r1")
    sha = git(clone, "rev-parse", "HEAD")
    assert git(remote, "rev-parse", "task/t1") == sha
    assert first.response is not None
    assert first.response.endswith(f"commit: {sha}")
    assert "added GET /hello" in first.response
    assert _head_files(clone) == [
        "backend/app/main.py",
        "backend/tests/test_endpoint_hello.py",
    ]

    second = await _ask(clone, "add a /bye endpoint that returns Goodbye, caller", "r2")
    assert second.response is not None
    assert "added GET /bye" in second.response
    code, output = _make_test(backend)
    assert code == 0, output
    assert "6 passed" in output
    answers = _serve_and_get(backend, ["/hello", "/bye", "/health"])
    assert answers["/hello"] == (200, {"message": "Hello!"})
    assert answers["/bye"] == (200, {"message": "Goodbye, caller"})
    assert answers["/health"][0] == 200

    before = main.read_text()
    again = await _ask(clone, "add a /hello endpoint", "r3")
    assert again.response is not None
    assert "GET /hello already exists in backend/app/main.py" in again.response
    assert main.read_text() == before
    assert before.count('@app.get("/hello")') == 1
    assert _head_files(clone) == [".builtin-agent/r3.md"]
    assert git(remote, "rev-parse", "task/t1") == git(clone, "rev-parse", "HEAD")


@pytest.mark.slow
async def test_hostile_texts_stay_literals(project: tuple[Path, Path]) -> None:
    """Quotes, $(..), newlines, backslashes and code-like TEXT end up as data; the app imports."""
    clone, _ = project
    backend = clone / "backend"
    texts = {
        "q1": 'it\'s "quoted" \'\'\'and\'\'\' """triple"""',
        "sh": "$(touch pwned) `touch pwned2`",
        "code": "'}\nimport os; os.system('touch pwned3')\n#",
        "esc": "back\\slash \\n \x00 \u2028 \U0001f600 é {braces} %s {{jinja}}",
    }
    for index, (name, text) in enumerate(texts.items()):
        spec = f"add a /{name} endpoint that returns {text}"
        result = await _ask(clone, spec, f"r{index}")
        assert result.response is not None
        assert f"added GET /{name}" in result.response
    code, output = _make_test(backend)
    assert code == 0, output
    assert f"{4 + len(texts)} passed" in output
    answers = _serve_and_get(backend, [f"/{name}" for name in texts])
    for name, text in texts.items():
        assert answers[f"/{name}"] == (200, {"message": text.strip()})
    assert not list(clone.rglob("pwned*"))


@pytest.mark.parametrize(
    "spec",
    ["add a /$(touch pwned) endpoint", "add a /x\"); import os #' endpoint", "add a /Up endpoint"],
)
async def test_hostile_names_are_refused_and_recorded(
    project: tuple[Path, Path], spec: str
) -> None:
    """An unsafe NAME changes no code: the spec is recorded and the answer says why."""
    clone, _ = project
    main = clone / "backend" / "app" / "main.py"
    before = main.read_text()
    result = await _ask(clone, spec)
    assert result.response is not None
    assert "did not implement this spec" in result.response
    assert "not a safe endpoint path" in result.response
    assert main.read_text() == before
    assert _head_files(clone) == [".builtin-agent/r1.md"]
    assert not list(clone.rglob("pwned*"))


async def test_other_specs_are_recorded_and_said_not_implemented(
    project: tuple[Path, Path],
) -> None:
    """A spec outside the grammar is recorded and committed; the answer says it was not done."""
    clone, remote = project
    result = await _ask(clone, "refactor the database layer")
    assert result.response is not None
    assert "did not implement this spec: the built-in agent only implements" in result.response
    assert "'add a /NAME endpoint [that returns TEXT]'" in result.response
    assert "recorded the prompt in .builtin-agent/r1.md" in result.response
    assert _head_files(clone) == [".builtin-agent/r1.md"]
    recorded = git(remote, "show", "task/t1:.builtin-agent/r1.md")
    assert recorded.startswith("refactor the database layer\n\nRepository: acme/demo-shop.")


async def test_without_a_backend_module_the_endpoint_is_not_implemented(tmp_path: Path) -> None:
    """A repository with no FastAPI module gets the spec recorded, with the reason."""
    clone = tmp_path / "clone"
    clone.mkdir()
    git(clone, "init", "-q", "-b", "main")
    (clone / "README.md").write_text("hello\n")
    git(clone, "add", "README.md")
    git(clone, "commit", "-q", "-m", "init")
    result = await _ask(clone, "add a /hello endpoint")
    assert result.response is not None
    assert "did not implement this spec (the workspace has no backend module" in result.response
    assert _head_files(clone) == [".builtin-agent/r1.md"]


async def test_without_the_marker_the_route_goes_before_create_apps_return(
    project: tuple[Path, Path],
) -> None:
    """An app/main.py without the marker line still gets the route, above `return app`."""
    clone, _ = project
    backend = clone / "backend"
    main = backend / "app" / "main.py"
    main.write_text(main.read_text().replace(f"    {ROUTES_MARKER}\n", ""))
    result = await _ask(clone, "add a /ping endpoint that returns pong")
    assert result.response is not None
    assert "added GET /ping" in result.response
    code, output = _make_test(backend)
    assert code == 0, output
    assert "5 passed" in output


async def test_a_broken_main_is_refused_untouched(project: tuple[Path, Path]) -> None:
    """An app/main.py that does not parse is left alone; the answer says so."""
    clone, _ = project
    main = clone / "backend" / "app" / "main.py"
    main.write_text(main.read_text() + "\ndef broken(:\n")
    result = await _ask(clone, "add a /ping endpoint")
    assert result.response is not None
    assert "backend/app/main.py does not parse" in result.response
    assert main.read_text().endswith("def broken(:\n")
    assert "broken" not in git(clone, "show", "HEAD:backend/app/main.py")


@pytest.mark.slow
async def test_names_that_map_to_one_identifier_get_distinct_functions_and_tests(
    project: tuple[Path, Path],
) -> None:
    """/a-b and /a_b both land, with their own function and test file, and both pass."""
    clone, _ = project
    backend = clone / "backend"
    await _ask(clone, "add a /a-b endpoint that returns dash", "r1")
    await _ask(clone, "add a /a_b endpoint that returns underscore", "r2")
    tests = sorted(path.name for path in (backend / "tests").glob("test_endpoint_*.py"))
    assert tests == ["test_endpoint_a_b.py", "test_endpoint_a_b_2.py"]
    code, output = _make_test(backend)
    assert code == 0, output
    assert "6 passed" in output
