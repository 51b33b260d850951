"""A small fake Kubernetes API server on the loopback interface, for `dagyo deploy`.

It answers discovery as a 1.30 API server does for the kinds dagyo applies and deletes,
keeps each object applied to it (a DELETE of one it does not hold is a 404), and records
every request, so the tests see exactly what the real kubernetes client sends.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

RESOURCES = {
    "/api/v1": [
        ("configmaps", "ConfigMap", True),
        ("namespaces", "Namespace", False),
        ("secrets", "Secret", True),
        ("serviceaccounts", "ServiceAccount", True),
        ("services", "Service", True),
    ],
    "/apis/apps/v1": [
        ("deployments", "Deployment", True),
        ("statefulsets", "StatefulSet", True),
    ],
    "/apis/policy/v1": [("poddisruptionbudgets", "PodDisruptionBudget", True)],
    "/apis/rbac.authorization.k8s.io/v1": [
        ("roles", "Role", True),
        ("rolebindings", "RoleBinding", True),
    ],
    "/apis/rabbitmq.com/v1beta1": [("rabbitmqclusters", "RabbitmqCluster", True)],
    "/apis/keda.sh/v1alpha1": [
        ("scaledobjects", "ScaledObject", True),
        ("scaledjobs", "ScaledJob", True),
        ("triggerauthentications", "TriggerAuthentication", True),
    ],
}


@dataclass
class FakeApiServer:
    """Discovery for the kinds dagyo applies; PATCH kept and echoed back, DELETE recorded."""

    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    with_keda: bool = True
    with_rabbitmq_operator: bool = True
    namespaces: set[str] = field(default_factory=lambda: {"dagyo"})
    # Each object's path, e.g. /apis/apps/v1/namespaces/dagyo/deployments/NAME.
    objects: dict[str, Any] = field(default_factory=dict)

    def patches(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["method"] == "PATCH"]

    def deletes(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["method"] == "DELETE"]


def _group(name: str, version: str) -> dict[str, Any]:
    group_version = {"groupVersion": f"{name}/{version}", "version": version}
    return {"name": name, "versions": [group_version], "preferredVersion": group_version}


def _handler(api: FakeApiServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _json(self, status: int, value: Any) -> None:
            body = json.dumps(value).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _routes(self) -> dict[str, list[tuple[str, str, bool]]]:
            return {
                path: kinds
                for path, kinds in RESOURCES.items()
                if (api.with_keda or "keda.sh" not in path)
                and (api.with_rabbitmq_operator or "rabbitmq.com" not in path)
            }

        def do_GET(self) -> None:
            path = urllib.parse.urlsplit(self.path).path
            api.requests.append({"method": "GET", "path": path})
            routes = self._routes()
            if path == "/version":
                self._json(200, {"major": "1", "minor": "30", "gitVersion": "v1.30.0"})
            elif path == "/api":
                self._json(200, {"kind": "APIVersions", "versions": ["v1"]})
            elif path == "/apis":
                groups = [
                    _group(*route.removeprefix("/apis/").split("/"))
                    for route in routes
                    if route.startswith("/apis/")
                ]
                self._json(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
            elif path in routes:
                resources = [
                    {
                        "name": plural,
                        "singularName": "",
                        "namespaced": namespaced,
                        "kind": kind,
                        "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
                    }
                    for plural, kind, namespaced in routes[path]
                ]
                group_version = path.removeprefix("/apis/").removeprefix("/api/")
                self._json(
                    200,
                    {
                        "kind": "APIResourceList",
                        "groupVersion": group_version,
                        "resources": resources,
                    },
                )
            else:
                self._json(404, {"kind": "Status", "code": 404, "message": f"no {path}"})

        def do_PATCH(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            api.requests.append(
                {
                    "method": "PATCH",
                    "path": url.path,
                    "query": dict(urllib.parse.parse_qsl(url.query)),
                    "content_type": self.headers.get("Content-Type"),
                    "authorization": self.headers.get("Authorization"),
                    "body": yaml.safe_load(body),
                }
            )
            namespace = url.path.split("/namespaces/")[1].split("/")[0]
            if namespace not in api.namespaces:
                self._json(
                    404,
                    {
                        "kind": "Status",
                        "apiVersion": "v1",
                        "status": "Failure",
                        "code": 404,
                        "reason": "NotFound",
                        "message": f'namespaces "{namespace}" not found',
                    },
                )
                return
            api.objects[url.path] = yaml.safe_load(body)
            self._json(200, api.objects[url.path])

        def do_DELETE(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            api.requests.append(
                {"method": "DELETE", "path": url.path, "body": json.loads(body or b"{}")}
            )
            if url.path not in api.objects:
                name = url.path.rsplit("/", 1)[-1]
                self._json(
                    404,
                    {
                        "kind": "Status",
                        "apiVersion": "v1",
                        "status": "Failure",
                        "code": 404,
                        "reason": "NotFound",
                        "message": f'"{name}" not found',
                    },
                )
                return
            del api.objects[url.path]
            self._json(200, {"kind": "Status", "apiVersion": "v1", "status": "Success"})

    return Handler


@contextmanager
def serving() -> Iterator[FakeApiServer]:
    """Run a fake API server on a free loopback port while the block runs."""
    api = FakeApiServer()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(api))
    server.daemon_threads = True
    api.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()


def kubeconfig(path: Path, server: str) -> Path:
    """Write a kubeconfig whose current context is the server, with a bearer token."""
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "test", "cluster": {"server": server}}],
                "users": [{"name": "test", "user": {"token": "test-token"}}],
                "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}],
                "current-context": "test",
            }
        )
    )
    return path


def api_client(url: str) -> client.ApiClient:
    """Return a kubernetes client of the server at url."""
    configuration = client.Configuration()
    configuration.host = url
    return client.ApiClient(configuration)
