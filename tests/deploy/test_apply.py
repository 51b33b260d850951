"""`dagyo deploy`: server-side apply through the real kubernetes client, and its errors.

There is no cluster here, so the kubernetes client talks to a small fake API server on
the loopback interface: it answers discovery as a 1.30 API server does and records every
request, so the tests see exactly what the client sends for our calls.
"""

from __future__ import annotations

import json
import tempfile
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from kubernetes import client

from executor.errors import ApplyFailed, ClusterUnavailable
from executor.progdef import load_catalogue
from scheduler.cli.deploy import deploy
from scheduler.deploy import DeploySettings, apply_objects, render_catalogue
from scheduler.deploy.images import scheduler_image_tag
from tests.deploy import PROGDEFS

RESOURCES = {
    "/api/v1": [("configmaps", "ConfigMap", True), ("namespaces", "Namespace", False)],
    "/apis/apps/v1": [("deployments", "Deployment", True)],
    "/apis/policy/v1": [("poddisruptionbudgets", "PodDisruptionBudget", True)],
    "/apis/keda.sh/v1alpha1": [
        ("scaledobjects", "ScaledObject", True),
        ("triggerauthentications", "TriggerAuthentication", True),
    ],
}


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("DAGYO_PROGDEF_VERSION", raising=False)
    # A lock left by a real `dagyo build --push` would pin images: use none.
    monkeypatch.setenv("DAGYO_IMAGES_LOCK", str(tmp_path / "images.lock.json"))
    # Not in a pod, and the dynamic client's discovery cache kept out of the shared one.
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))


@dataclass
class FakeApiServer:
    """Discovery for the kinds dagyo applies, and PATCH recorded and echoed back."""

    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    with_keda: bool = True
    namespaces: set[str] = field(default_factory=lambda: {"dagyo"})

    def patches(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["method"] == "PATCH"]


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
                if api.with_keda or "keda.sh" not in path
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
                        "verbs": ["create", "get", "list", "patch", "update", "watch"],
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
            self._json(200, yaml.safe_load(body))

    return Handler


@pytest.fixture
def api_server() -> Iterator[FakeApiServer]:
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


def _kubeconfig(path: Path, server: str) -> Path:
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


def _objects(**settings: Any) -> list[dict[str, Any]]:
    """What `dagyo deploy` renders by default: the scheduler image is the one build makes."""
    settings.setdefault("scheduler_image", scheduler_image_tag(""))
    settings.setdefault("allow_tags", True)
    return render_catalogue(load_catalogue(PROGDEFS), DeploySettings(**settings))


def _api_client(url: str) -> client.ApiClient:
    configuration = client.Configuration()
    configuration.host = url
    return client.ApiClient(configuration)


def test_every_object_is_server_side_applied_as_dagyo(
    api_server: FakeApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(_kubeconfig(tmp_path / "config", api_server.url)))
    result = CliRunner().invoke(deploy, ["--allow-tags", "--progdefs", str(PROGDEFS)])
    assert result.exit_code == 0, result.output
    objects = _objects()
    patches = api_server.patches()
    assert len(patches) == len(objects)
    plural = {kind: name for kinds in RESOURCES.values() for name, kind, _ in kinds}
    prefix = {"v1": "/api/v1"}
    for obj, patch in zip(objects, patches, strict=True):
        group = prefix.get(obj["apiVersion"], f"/apis/{obj['apiVersion']}")
        name = obj["metadata"]["name"]
        assert patch["path"] == f"{group}/namespaces/dagyo/{plural[obj['kind']]}/{name}"
        assert patch["query"] == {"fieldManager": "dagyo", "force": "true"}
        assert patch["content_type"] == "application/apply-patch+yaml"
        assert patch["authorization"] == "Bearer test-token"
        assert patch["body"] == obj
    lines = result.output.splitlines()
    assert lines[0] == "configmap/dagyo-catalogue applied"
    assert lines[-1] == "deployment/dagyo-scheduler applied"


def test_apply_objects_takes_another_field_manager(api_server: FakeApiServer) -> None:
    objects = _objects(namespace="dagyo", tls_secret="")[:2]
    seen: list[str] = []
    applied = apply_objects(
        _api_client(api_server.url), objects, field_manager="ci", on_applied=seen.append
    )
    assert applied == seen == ["configmap/dagyo-catalogue", "deployment/dagyo-assert"]
    assert [p["query"]["fieldManager"] for p in api_server.patches()] == ["ci", "ci"]


def test_a_cluster_without_keda_is_told_to_install_it(api_server: FakeApiServer) -> None:
    api_server.with_keda = False
    with pytest.raises(ApplyFailed, match="serves no ScaledObject .*install KEDA first"):
        apply_objects(_api_client(api_server.url), _objects(tls_secret=""))
    # Everything before the first ScaledObject went through; nothing after it.
    kinds = [patch["body"]["kind"] for patch in api_server.patches()]
    assert kinds == ["ConfigMap", "Deployment", "PodDisruptionBudget"]
    # With TLS, KEDA's first object is the TriggerAuthentication: before any executor.
    with pytest.raises(ApplyFailed, match="serves no TriggerAuthentication .*install KEDA"):
        apply_objects(_api_client(api_server.url), _objects())
    assert [patch["body"]["kind"] for patch in api_server.patches()][3:] == ["ConfigMap"]
    applied = apply_objects(_api_client(api_server.url), _objects(autoscaler="none"))
    assert not [name for name in applied if name.startswith("scaledobject/")]


def test_a_missing_namespace_points_at_deploy_k8s(
    api_server: FakeApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(_kubeconfig(tmp_path / "config", api_server.url)))
    result = CliRunner().invoke(deploy, ["--allow-tags", "--namespace", "elsewhere"])
    assert result.exit_code == 1
    assert "applying ConfigMap/dagyo-catalogue failed: 404" in result.output
    assert 'namespaces "elsewhere" not found' in result.output
    assert "apply deploy/k8s/ first" in result.output
    assert "Traceback" not in result.output


def test_no_cluster_configured_exits_3_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-such-kubeconfig"))
    with pytest.raises(ClusterUnavailable, match="no Kubernetes cluster configured"):
        from scheduler.deploy import connect_cluster

        connect_cluster()
    result = CliRunner().invoke(deploy, ["--allow-tags"])
    assert result.exit_code == 3
    assert result.output.count("\n") == 1
    assert result.output.startswith("dagyo: no Kubernetes cluster configured")
    assert "KUBECONFIG" in result.output and "--dry-run" in result.output


def test_an_unreachable_api_server_exits_3_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Port 9 on the loopback interface: nothing listens, the connection is refused.
    unreachable = "http://127.0.0.1:9"
    with pytest.raises(ClusterUnavailable, match="cannot reach the Kubernetes API"):
        apply_objects(_api_client(unreachable), _objects())
    monkeypatch.setenv("KUBECONFIG", str(_kubeconfig(tmp_path / "config", unreachable)))
    result = CliRunner().invoke(deploy, ["--allow-tags"])
    assert result.exit_code == 3
    assert result.output.count("\n") == 1
    assert result.output.startswith(f"dagyo: cannot reach the Kubernetes API at {unreachable}")
    assert "Traceback" not in result.output


def test_dry_run_needs_no_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-such-kubeconfig"))
    result = CliRunner().invoke(deploy, ["--dry-run", "--allow-tags", "--namespace", "team-a"])
    assert result.exit_code == 0, result.output
    documents = list(yaml.safe_load_all(result.output))
    assert documents == _objects(namespace="team-a")
