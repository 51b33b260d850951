"""Upgrades that never strand a job: one set of objects per progdef version, and --prune.

Two builds of the same progdef render side by side (the old version's executors keep
draining its mailbox), and `dagyo deploy --prune` deletes the objects of the versions the
scheduler reports retired, and of those only. The scheduler is a gRPC server answering
Versions as told; the cluster is the fake API server of tests/deploy/fake_api.py.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from click.testing import CliRunner

from executor.core.progdef import Catalogue, load_catalogue
from scheduler.cli.deploy import deploy
from scheduler.deploy import DeploySettings, apply_objects, render_catalogue
from scheduler.deploy.prune import delete_objects, retired_objects
from scheduler.pb.dagyo.v1 import scheduler_pb2 as pb
from scheduler.pb.dagyo.v1 import scheduler_pb2_grpc
from tests.deploy import check_names_and_labels, copy_catalogue, validate_any
from tests.deploy.fake_api import FakeApiServer, api_client, kubeconfig


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("DAGYO_PROGDEF_VERSION", raising=False)
    monkeypatch.setenv("DAGYO_IMAGES_LOCK", str(tmp_path / "images.lock.json"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    for variable in ("DAGYO_TOKEN", "DAGYO_TLS_CA", "DAGYO_TLS_CERT", "DAGYO_TLS_KEY"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))


def _builds(tmp_path: Path) -> tuple[Path, Catalogue, Catalogue]:
    """The new build's catalogue folder, the old build's catalogue and the new one's."""
    old = load_catalogue(copy_catalogue(tmp_path / "old", ("greet", "void_sink")))
    folder = copy_catalogue(tmp_path, ("greet", "void_sink"))
    path = folder / "greet" / "progdef.json"
    data = json.loads(path.read_text())
    data["env"] = {**data.get("env", {}), "GREETING": "hi"}
    path.write_text(json.dumps(data, indent=2))
    new = load_catalogue(folder)
    assert old["greet"].version != new["greet"].version
    return folder, old, new


def _render(catalogue: Catalogue, **settings: Any) -> list[dict[str, Any]]:
    settings.setdefault("allow_tags", True)
    return render_catalogue(catalogue, DeploySettings(**settings))


def _executor_objects(objects: list[dict[str, Any]], progdef: str) -> dict[str, dict[str, Any]]:
    return {
        obj["kind"]: obj
        for obj in objects
        if obj["metadata"]["labels"].get("dagyo.io/progdef") == progdef
    }


def test_each_version_has_its_own_deployment_scaled_object_and_budget(tmp_path: Path) -> None:
    _, old, new = _builds(tmp_path)
    rendered = {}
    for catalogue in (old, new):
        version = catalogue["greet"].version
        objects = _executor_objects(_render(catalogue), "greet")
        assert sorted(objects) == ["Deployment", "PodDisruptionBudget", "ScaledObject"]
        for obj in objects.values():
            validate_any(obj)
            check_names_and_labels(obj)
            assert obj["metadata"]["name"] == f"dagyo-greet-{version}"
            assert obj["metadata"]["labels"]["dagyo.io/version"] == version
        deployment = objects["Deployment"]
        selector = deployment["spec"]["selector"]["matchLabels"]
        # The old version's pods are never the new Deployment's, nor in the new budget.
        assert selector["dagyo.io/version"] == version
        assert objects["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == selector
        assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
        scaled = objects["ScaledObject"]["spec"]
        assert scaled["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
        assert scaled["triggers"][0]["metadata"]["version"] == version
        rendered[version] = objects
    old_names = {obj["metadata"]["name"] for obj in rendered[old["greet"].version].values()}
    new_names = {obj["metadata"]["name"] for obj in rendered[new["greet"].version].values()}
    assert not old_names & new_names, "applying the new build leaves the old one running"
    # A progdef that did not change keeps its objects.
    assert _executor_objects(_render(old), "void_sink") == _executor_objects(
        _render(new), "void_sink"
    )


def test_a_scaled_job_is_per_version_too(tmp_path: Path) -> None:
    folder, _, _ = _builds(tmp_path)
    path = folder / "greet" / "progdef.json"
    data = json.loads(path.read_text())
    data["scaling"] = {"mode": "job", "max_jobs": 1}
    path.write_text(json.dumps(data, indent=2))
    catalogue = load_catalogue(folder)
    (scaled,) = _executor_objects(_render(catalogue), "greet").values()
    validate_any(scaled)
    assert scaled["kind"] == "ScaledJob"
    assert scaled["metadata"]["name"] == f"dagyo-greet-{catalogue['greet'].version}"


def _version(progdef: str, version: str, state: str) -> pb.ProgdefVersion:
    return pb.ProgdefVersion(progdef=progdef, version=version, state=state)


def test_prune_picks_the_retired_versions_only_never_the_current_one(tmp_path: Path) -> None:
    _, old, new = _builds(tmp_path)
    current, retired = new["greet"].version, old["greet"].version
    versions = [
        _version("greet", current, "current"),
        _version("greet", retired, "retired"),
        _version("greet", "0123456789abcdef", "draining"),
        # Reported retired by mistake, or by a scheduler on another catalogue: kept.
        _version("void_sink", new["void_sink"].version, "retired"),
        # A progdef taken out of the catalogue: its retired version goes too.
        _version("old_tool", "fedcba9876543210", "retired"),
    ]
    refs = retired_objects(versions, new, DeploySettings(namespace="team-a"))
    assert [(ref.kind, ref.name) for ref in refs] == [
        (kind, name)
        for name in (f"dagyo-greet-{retired}", "dagyo-old-tool-fedcba9876543210")
        for kind in ("ScaledObject", "ScaledJob", "Deployment", "PodDisruptionBudget")
    ]
    assert {ref.namespace for ref in refs} == {"team-a"}
    assert retired_objects(versions[:1] + versions[2:4], new, DeploySettings()) == []


class _Scheduler(scheduler_pb2_grpc.SchedulerServicer):
    """Answers Versions with the versions it is given."""

    def __init__(self) -> None:
        self.versions: list[pb.ProgdefVersion] = []

    def Versions(self, request: pb.VersionsRequest, context: grpc.ServicerContext) -> Any:  # noqa: N802
        return pb.VersionsResponse(versions=self.versions)


@pytest.fixture
def scheduler() -> Iterator[tuple[_Scheduler, str]]:
    servicer = _Scheduler()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    scheduler_pb2_grpc.add_SchedulerServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield servicer, f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None)


def test_deploy_prune_deletes_the_objects_of_retired_versions(
    api_server: FakeApiServer,
    scheduler: tuple[_Scheduler, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    servicer, address = scheduler
    folder, old, new = _builds(tmp_path)
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path / "config", api_server.url)))
    # The old build is deployed; then the new one, beside it.
    arguments = ["--allow-tags", "--scheduler", address, "--progdefs"]
    result = CliRunner().invoke(deploy, [*arguments, str(tmp_path / "old" / "progdefs")])
    assert result.exit_code == 0, result.output
    old_version, new_version = old["greet"].version, new["greet"].version
    servicer.versions = [
        _version("greet", old_version, "draining"),
        _version("greet", new_version, "current"),
    ]
    # While the old version drains, --prune deletes nothing.
    result = CliRunner().invoke(deploy, [*arguments, str(folder), "--prune"])
    assert result.exit_code == 0, result.output
    assert api_server.deletes() == []
    kept = {path.rsplit("/", 1)[-1] for path in api_server.objects}
    assert {f"dagyo-greet-{old_version}", f"dagyo-greet-{new_version}"} <= kept
    # Once it is retired, its objects go, and no other.
    servicer.versions[0] = _version("greet", old_version, "retired")
    before = set(api_server.objects)
    result = CliRunner().invoke(deploy, [*arguments, str(folder), "--prune"])
    assert result.exit_code == 0, result.output
    name = f"dagyo-greet-{old_version}"
    gone = before - set(api_server.objects)
    assert gone == {
        f"/apis/keda.sh/v1alpha1/namespaces/dagyo/scaledobjects/{name}",
        f"/apis/apps/v1/namespaces/dagyo/deployments/{name}",
        f"/apis/policy/v1/namespaces/dagyo/poddisruptionbudgets/{name}",
    }
    # The ScaledJob it never had is skipped without a word; the pods go in the background.
    assert result.output.splitlines()[-3:] == [
        f"scaledobject/{name} deleted",
        f"deployment/{name} deleted",
        f"poddisruptionbudget/{name} deleted",
    ]
    assert {d["body"].get("propagationPolicy") for d in api_server.deletes()} == {"Background"}
    # Pruning again finds nothing left to delete.
    result = CliRunner().invoke(deploy, [*arguments, str(folder), "--prune"])
    assert result.exit_code == 0, result.output
    assert "deleted" not in result.output


def test_prune_needs_the_cluster_and_the_scheduler(
    api_server: FakeApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = CliRunner().invoke(deploy, ["--allow-tags", "--dry-run", "--prune"])
    assert result.exit_code == 2
    assert "--prune deletes objects from the cluster: drop --dry-run" in result.output
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path / "config", api_server.url)))
    result = CliRunner().invoke(deploy, ["--allow-tags", "--prune", "--scheduler", "127.0.0.1:9"])
    assert result.exit_code == 3, result.output
    assert "127.0.0.1:9" in result.output
    assert api_server.deletes() == []


def test_prune_without_keda_deletes_the_deployment_and_budget(
    api_server: FakeApiServer, tmp_path: Path
) -> None:
    api_server.with_keda = False
    _, old, new = _builds(tmp_path)
    cluster = api_client(api_server.url)
    apply_objects(cluster, _render(old, autoscaler="none", tls_secret=""))
    apply_objects(cluster, _render(new, autoscaler="none", tls_secret=""))
    versions = [_version("greet", old["greet"].version, "retired")]
    name = f"dagyo-greet-{old['greet'].version}"
    deleted = delete_objects(cluster, retired_objects(versions, new, DeploySettings()))
    assert deleted == [f"deployment/{name}", f"poddisruptionbudget/{name}"]
    assert not [d for d in api_server.deletes() if "keda.sh" in d["path"]]
    assert {path.rsplit("/", 1)[-1] for path in api_server.objects} >= {
        f"dagyo-greet-{new['greet'].version}"
    }
