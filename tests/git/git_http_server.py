"""A local smart-HTTP git server (git-http-backend as CGI) that demands a basic credential.

It stands in for GitHub's git endpoint: it refuses requests without the expected
`Authorization` header, and while serving it checks that no process on the machine carries
the token in its command line (the token must travel in git's environment only).
"""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

_BACKEND = "/usr/lib/git-core/git-http-backend"


class GitHttpServer(ThreadingHTTPServer):
    """Serves the bare repositories under `root` at http://127.0.0.1:<port>/<owner>/<name>.git."""

    daemon_threads = True

    def __init__(self, root: Path, expected_authorization: str, token: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.root = root
        self.expected_authorization = expected_authorization
        self.token = token
        self.unauthorized = 0
        self.served = 0
        self.token_seen_in_argv = False

    @property
    def url(self) -> str:
        """Base URL of the server."""
        return f"http://127.0.0.1:{self.server_address[1]}"


def _token_in_any_cmdline(token: str) -> bool:
    needle = token.encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "cmdline").read_bytes():
                return True
        except OSError:
            continue
    return False


class _Handler(BaseHTTPRequestHandler):
    server: GitHttpServer

    def log_message(self, format: str, *args: object) -> None:
        """Stay quiet."""

    def do_GET(self) -> None:
        """Serve info/refs and objects."""
        self._serve()

    def do_POST(self) -> None:
        """Serve upload-pack and receive-pack."""
        self._serve()

    def _serve(self) -> None:
        if _token_in_any_cmdline(self.server.token):
            self.server.token_seen_in_argv = True
        if self.headers.get("Authorization") != self.server.expected_authorization:
            self.server.unauthorized += 1
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path, _, query = self.path.partition("?")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        env = {
            "PATH": os.environ.get("PATH", ""),
            "GIT_PROJECT_ROOT": str(self.server.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REMOTE_USER": "x-access-token",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(length),
            "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
            "GIT_CONFIG_COUNT": "1",
            "GIT_CONFIG_KEY_0": "http.receivepack",
            "GIT_CONFIG_VALUE_0": "true",
        }
        result = subprocess.run(
            [_BACKEND], input=body, env=env, capture_output=True, check=False, timeout=30
        )
        head, _, payload = result.stdout.partition(b"\r\n\r\n")
        status = 200
        headers: list[tuple[str, str]] = []
        for line in head.decode().split("\r\n"):
            key, _, value = line.partition(": ")
            if key.lower() == "status":
                status = int(value.split()[0])
            elif key:
                headers.append((key, value))
        self.server.served += 1
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@contextmanager
def serve_git(root: Path, expected_authorization: str, token: str) -> Iterator[GitHttpServer]:
    """Run the server in a thread for the duration of the block."""
    server = GitHttpServer(root, expected_authorization, token)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
