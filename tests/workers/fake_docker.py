"""A small fake of the Docker Engine API on a unix socket, recording every request.

It keeps containers and networks in memory and answers the calls the docker SDK makes for
`containers.run/get/list`, `container.stop/remove`, `networks.create/get/remove`, logs and
an image's inspection (every image sets `IMAGE_ENV`).
"""

from __future__ import annotations

import json
import re
import socketserver
import struct
import sys
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

IMAGE_ENV = ["PATH=/opt/venv/bin:/usr/bin:/bin", "HOME=/home/agent", "PYTHONPATH=/opt/orchestrator"]
"""The variables every image of the fake engine sets (`Config.Env`)."""


@dataclass
class Recorded:
    """One request the fake received."""

    method: str
    path: str
    query: dict[str, list[str]]
    body: Any


@dataclass
class EngineState:
    """What the fake engine holds."""

    requests: list[Recorded] = field(default_factory=list)
    containers: dict[str, dict[str, Any]] = field(default_factory=dict)
    networks: dict[str, dict[str, Any]] = field(default_factory=dict)


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    state: EngineState

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that hung up early (BrokenPipeError) is no error of the fake's."""
        if not isinstance(sys.exc_info()[1], BrokenPipeError | ConnectionResetError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        """Stay quiet."""

    def address_string(self) -> str:
        """A unix socket has no peer address."""
        return "unix"

    def _reply(self, status: int, body: Any = None, raw: bytes | None = None) -> None:
        data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self) -> None:
        parts = urlsplit(self.path)
        path = re.sub(r"^/v[\d.]+", "", parts.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body: Any = json.loads(raw) if raw else {}
        state = self.server.state
        state.requests.append(Recorded(self.command, path, parse_qs(parts.query), body))
        route = (self.command, path)
        if route == ("POST", "/networks/create"):
            net_id = uuid.uuid4().hex
            state.networks[net_id] = {"Id": net_id, "Name": body["Name"], "Labels": body["Labels"]}
            return self._reply(201, {"Id": net_id, "Warning": ""})
        found = re.match(r"^/networks/([^/]+)$", path)
        if found:
            key = found.group(1)
            net = state.networks.get(key) or next(
                (n for n in state.networks.values() if n["Name"] == key), None
            )
            if net is None:
                return self._reply(404, {"message": "network not found"})
            if self.command == "DELETE":
                del state.networks[net["Id"]]
                return self._reply(204)
            return self._reply(200, net)
        if route == ("POST", "/containers/create") and body.get("Image") == "broken:image":
            return self._reply(500, {"message": "fake engine: cannot create"})
        if route == ("POST", "/containers/create"):
            container_id = uuid.uuid4().hex + uuid.uuid4().hex
            state.containers[container_id] = {
                "Id": container_id,
                "Name": "/" + parse_qs(parts.query)["name"][0],
                "Image": f"sha256:{body.get('Image', '')}",
                "Config": {**body, "Tty": False},
                "HostConfig": body.get("HostConfig", {}),
                "State": {"Status": "created", "Running": False, "ExitCode": 0},
            }
            return self._reply(201, {"Id": container_id, "Warnings": []})
        if route == ("GET", "/containers/json"):
            filters = json.loads(parse_qs(parts.query).get("filters", ["{}"])[0])
            wanted = dict(item.split("=", 1) for item in filters.get("label", []))
            listed = [
                {"Id": c["Id"], "Labels": c["Config"].get("Labels", {}), "State": "running"}
                for c in state.containers.values()
                if c["State"]["Running"]
                and all(c["Config"].get("Labels", {}).get(k) == v for k, v in wanted.items())
            ]
            return self._reply(200, listed)
        found = re.match(r"^/images/(.+)/json$", path)
        if found and self.command == "GET":
            name = unquote(found.group(1))
            image_id = name if name.startswith("sha256:") else f"sha256:{name}"
            return self._reply(200, {"Id": image_id, "Config": {"Env": IMAGE_ENV}})
        found = re.match(r"^/containers/([0-9a-f]+)(?:/(\w+))?$", path)
        if found:
            container = state.containers.get(found.group(1))
            if container is None:
                return self._reply(404, {"message": "No such container"})
            action = found.group(2)
            if action == "start":
                container["State"] = {"Status": "running", "Running": True, "ExitCode": 0}
                return self._reply(204)
            if action == "stop":
                container["State"] = {"Status": "exited", "Running": False, "ExitCode": 143}
                return self._reply(204)
            if action == "json":
                return self._reply(200, container)
            if action == "logs":
                text = b"wrapper said goodbye\n"
                return self._reply(200, raw=struct.pack(">BxxxL", 2, len(text)) + text)
            if action is None and self.command == "DELETE" and container.get("Removing"):
                return self._reply(409, {"message": "removal is already in progress"})
            if action is None and self.command == "DELETE":
                del state.containers[container["Id"]]
                return self._reply(204)
        return self._reply(404, {"message": f"fake engine: no route {route}"})

    do_GET = _handle  # noqa: N815 - BaseHTTPRequestHandler's naming
    do_POST = _handle  # noqa: N815
    do_DELETE = _handle  # noqa: N815


class FakeDockerEngine:
    """Serve the fake Engine API on `socket_path` in a thread; `stop()` when done."""

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path
        self.state = EngineState()
        self._server = _Server(str(socket_path), _Handler)
        self._server.state = self.state
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base_url(self) -> str:
        """The docker SDK's base_url for this engine."""
        return f"unix://{self.socket_path}"

    def start(self) -> FakeDockerEngine:
        """Start serving."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def find(self, method: str, path_prefix: str) -> list[Recorded]:
        """The recorded requests of a method whose path starts with `path_prefix`."""
        return [
            r for r in self.state.requests if r.method == method and r.path.startswith(path_prefix)
        ]
