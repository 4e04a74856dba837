"""The one capability of the built-in agent: "add a /NAME endpoint [that returns TEXT]".

`parse_endpoint_spec` reads the first paragraph of a prompt (the flow puts the task's spec
there) with a small fixed grammar, described in docs/builtin-agent.md. `add_endpoint` adds
the route to the backend module's `app/main.py` (a scaffold of the backend template) and a
pytest test for it in the module's `tests/`. The generated code carries NAME only after it
matched a safe path segment and TEXT only as a Python literal (`repr`), so no spec can
break the file or put code into it.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DEFAULT_GREETING",
    "ENDPOINT_GRAMMAR",
    "ROUTES_MARKER",
    "EndpointAdded",
    "EndpointExists",
    "EndpointRefused",
    "EndpointSpec",
    "add_endpoint",
    "default_text",
    "find_backend_module",
    "parse_endpoint_spec",
]

ENDPOINT_GRAMMAR = "add a /NAME endpoint [that returns TEXT]"
"""How the grammar reads in answers; the full form is in docs/builtin-agent.md."""
ROUTES_MARKER = "# builtin-agent: new routes go above this line"
"""The line of the backend template's `create_app` above which routes are added."""
DEFAULT_GREETING = "Hello!"
"""The message of an endpoint that "greets the caller"."""
MAX_NAME_CHARS = 64
MAX_TEXT_CHARS = 500

_NAME = re.compile(rf"[a-z0-9_-]{{1,{MAX_NAME_CHARS}}}")
_VERBS = r"add|create|develop|build|implement|make|write"
_ARTICLES = r"a|an|the|one|a\s+new|new"
_REQUEST = re.compile(
    rf"^(?:(?:{_VERBS})\s+)?(?:(?:{_ARTICLES})\s+)?(?:get\s+)?"
    r"/(?P<name>.*?)\s+(?:http\s+)?(?:endpoint|route)(?P<tail>(?:\W.*)?)$",
    re.IGNORECASE | re.DOTALL,
)
_RETURNS = re.compile(
    r"^,?\s*(?:(?:that|which)\s+)?"
    r"(?:returns|says|answers(?:\s+with)?|responds\s+with|replies\s+with)\s+(?P<text>.+)$",
    re.IGNORECASE | re.DOTALL,
)
_GREETS = re.compile(r"^,?\s*(?:(?:that|which)\s+)?greets\b.*$", re.IGNORECASE | re.DOTALL)
_QUOTES = {'"': '"', "'": "'", "`": "`", "\u201c": "\u201d", "\u2018": "\u2019"}
_ROUTE_METHODS = {"get", "post", "put", "patch", "delete", "head", "options", "api_route"}
_FRAMEWORK_PATHS = {"/docs", "/redoc", "/openapi.json"}
"""Paths FastAPI serves itself; an endpoint there would never answer."""


@dataclass(frozen=True)
class EndpointSpec:
    """A parsed request: GET /`name` answers {"message": `text`}."""

    name: str
    text: str

    @property
    def path(self) -> str:
        """The route's path."""
        return f"/{self.name}"


@dataclass(frozen=True)
class EndpointAdded:
    """The route and its test were written; `files` are relative to the workspace."""

    main: str
    test: str

    @property
    def files(self) -> list[str]:
        """The files written."""
        return [self.main, self.test]


@dataclass(frozen=True)
class EndpointExists:
    """The app already has the route; nothing was written."""

    main: str


@dataclass(frozen=True)
class EndpointRefused:
    """The request matched the grammar but cannot be done; `reason` says why."""

    reason: str


def default_text(name: str) -> str:
    """The message of an endpoint asked for without a TEXT."""
    return f"Hello from /{name}!"


def _first_paragraph(prompt: str) -> str:
    for paragraph in re.split(r"\n\s*\n", prompt.strip()):
        if paragraph.strip():
            return paragraph.strip()
    return ""


def _unquote(text: str) -> str:
    if len(text) >= 2 and _QUOTES.get(text[0]) == text[-1]:
        return text[1:-1]
    return text


def _text_of(tail: str, name: str) -> str | EndpointRefused | None:
    """The message a tail asks for; None when the tail is not part of the grammar."""
    tail = tail.strip()
    if tail in ("", "."):
        return default_text(name)
    if _GREETS.match(tail):
        return DEFAULT_GREETING
    if match := _RETURNS.match(tail):
        text = _unquote(match["text"].strip())
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return EndpointRefused("the text is not valid Unicode (it has a lone surrogate)")
        if len(text) > MAX_TEXT_CHARS:
            return EndpointRefused(
                f"the text is {len(text)} characters long; at most {MAX_TEXT_CHARS} are allowed"
            )
        return text
    return None


def parse_endpoint_spec(prompt: str) -> EndpointSpec | EndpointRefused | None:
    """The endpoint the prompt's first paragraph asks for; a refusal; None if not this grammar."""
    match = _REQUEST.match(_first_paragraph(prompt))
    if match is None:
        return None
    name = match["name"]
    if not _NAME.fullmatch(name):
        shown = name if len(name) <= 80 else name[:80] + "..."
        return EndpointRefused(
            f"{'/' + shown!r} is not a safe endpoint path: NAME must be 1 to {MAX_NAME_CHARS} "
            "characters of a-z, 0-9, '_' and '-'"
        )
    text = _text_of(match["tail"], name)
    if text is None:
        return None
    if isinstance(text, EndpointRefused):
        return text
    return EndpointSpec(name=name, text=text)


def _is_backend(module: Path) -> bool:
    main = module / "app" / "main.py"
    try:
        return main.is_file() and "FastAPI" in main.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False


def find_backend_module(workspace: Path) -> Path | None:
    """The backend module: `backend/`, else a folder (or the root) with a FastAPI app/main.py."""
    preferred = workspace / "backend"
    if _is_backend(preferred):
        return preferred
    folders = sorted(
        entry for entry in workspace.iterdir() if entry.is_dir() and not entry.name.startswith(".")
    )
    for module in [*folders, workspace]:
        if _is_backend(module):
            return module
    return None


def _route_path(node: ast.AST) -> str | None:
    """The path of a route decorator or `add_api_route` call, else None."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
        return None
    if node.func.attr not in (_ROUTE_METHODS | {"add_api_route"}) or not node.args:
        return None
    first = node.args[0]
    return first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else None


def _existing_paths(app_dir: Path, main_tree: ast.Module) -> set[str]:
    """Route paths declared in the app package (main.py already parsed)."""
    trees = [main_tree]
    for source in sorted(app_dir.rglob("*.py")):
        if source.name != "main.py" or source.parent != app_dir:
            try:
                trees.append(ast.parse(source.read_text(encoding="utf-8")))
            except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
                continue
    paths = {path for tree in trees for node in ast.walk(tree) if (path := _route_path(node))}
    return paths | _FRAMEWORK_PATHS


def _insertion_line(lines: list[str], tree: ast.Module) -> tuple[int, str] | None:
    """(index, indentation) where the route goes: at the marker, else before create_app's return."""
    for index, line in enumerate(lines):
        if line.strip() == ROUTES_MARKER:
            return index, line[: len(line) - len(line.lstrip())]
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "create_app":
            last = node.body[-1]
            if isinstance(last, ast.Return) and isinstance(last.value, ast.Name):
                index = last.lineno - 1
                return index, lines[index][: last.col_offset]
    return None


def _free_name(stem: str, taken: set[str]) -> str:
    name, counter = stem, 2
    while name in taken:
        name, counter = f"{stem}_{counter}", counter + 1
    return name


def _route_code(spec: EndpointSpec, function: str, indent: str) -> str:
    body = [
        f'@app.get("{spec.path}")',  # a safe path segment: no escaping needed
        f"def {function}() -> dict[str, str]:",
        f'    """GET {spec.path}: added by the built-in agent."""',
        f'    return {{"message": {spec.text!r}}}',
        "",
    ]
    return "".join(f"{indent}{line}\n" if line else "\n" for line in body)


def _test_code(spec: EndpointSpec, function: str) -> str:
    return (
        f'"""GET {spec.path}, added by the built-in agent."""\n'
        "\n"
        "from __future__ import annotations\n"
        "\n"
        "from fastapi.testclient import TestClient\n"
        "\n"
        "from app.main import app\n"
        "\n"
        "\n"
        f"def test_{function}_answers_its_message() -> None:\n"
        f'    """GET {spec.path} answers 200 with its message."""\n'
        "    with TestClient(app) as client:\n"
        f'        response = client.get("{spec.path}")\n'
        "    assert response.status_code == 200\n"
        f'    assert response.json() == {{"message": {spec.text!r}}}\n'
    )


def add_endpoint(
    workspace: Path, module: Path, spec: EndpointSpec
) -> EndpointAdded | EndpointExists | EndpointRefused:
    """Add GET /NAME to the module's app and a test for it; nothing is written on a refusal."""
    main = module / "app" / "main.py"
    shown = main.relative_to(workspace).as_posix()
    source = main.read_text(encoding="utf-8")
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError) as error:
        return EndpointRefused(f"{shown} does not parse ({error}); fix it first")
    if spec.path in _existing_paths(main.parent, tree):
        return EndpointExists(main=shown)
    lines = re.findall(r".*?\n|.+$", source, re.DOTALL)  # ast's lines: split at "\n" only
    where = _insertion_line(lines, tree)
    if where is None:
        return EndpointRefused(
            f"found neither the line {ROUTES_MARKER!r} nor create_app's return in {shown}"
        )
    index, indent = where
    defined = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
    function = _free_name("endpoint_" + spec.name.replace("-", "_"), defined)
    updated = "".join([*lines[:index], _route_code(spec, function, indent), *lines[index:]])
    tests = module / "tests"
    taken = {path.stem for path in tests.glob("test_*.py")} if tests.is_dir() else set()
    test_file = tests / (_free_name(f"test_{function}", taken) + ".py")
    main.write_text(updated, encoding="utf-8")
    tests.mkdir(parents=True, exist_ok=True)
    test_file.write_text(_test_code(spec, function), encoding="utf-8")
    return EndpointAdded(main=shown, test=test_file.relative_to(workspace).as_posix())
