"""`dagyo build`: the plan, and building and pushing through the real Docker SDK.

There is no Docker daemon here, so the SDK talks to a small fake of the Docker Engine API
on a Unix socket (the same transport as the real daemon's): the tests see the HTTP
requests the SDK really makes for our calls, including the build context tarball.
"""

from __future__ import annotations

import io
import json
import socketserver
import subprocess
import sys
import tarfile
import tempfile
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import docker
import pytest
from click.testing import CliRunner

from executor.core.progdef import load_catalogue
from scheduler.cli.deploy import build, deploy
from scheduler.deploy import build_all, plan_images
from scheduler.deploy.builder import connect_docker
from scheduler.deploy.images import read_lock, record_digest, scheduler_image_tag
from scheduler.errors import DockerUnavailable, ImageBuildFailed
from tests.deploy import PROGDEFS, ROOT, SAMPLE_PROGDEFS, copy_catalogue

API_VERSION = "1.45"
DIGEST = "sha256:" + "d" * 64


@pytest.fixture(autouse=True)
def _no_baked_version(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("DAGYO_PROGDEF_VERSION", raising=False)
    # A lock left by a real `dagyo build --push` would pin images: use none.
    monkeypatch.setenv("DAGYO_IMAGES_LOCK", str(tmp_path / "images.lock.json"))


@dataclass
class FakeDaemon:
    """A Docker Engine API fake: records requests, answers build, inspect and push."""

    socket: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    fail_build: bool = False

    @property
    def base_url(self) -> str:
        return f"unix://{self.socket}"

    def builds(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["path"].endswith("/build")]

    def pushes(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["path"].endswith("/push")]


def _handler(daemon: FakeDaemon) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def address_string(self) -> str:
            return "fake"

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding") == "chunked":
                data = b""
                while True:
                    size = int(self.rfile.readline().strip(), 16)
                    if size == 0:
                        self.rfile.readline()
                        return data
                    data += self.rfile.read(size)
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _json(self, status: int, value: Any) -> None:
            body = json.dumps(value).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _stream(self, events: list[dict[str, Any]]) -> None:
            # The daemon streams build and push progress as chunked JSON lines.
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for event in events:
                chunk = (json.dumps(event) + "\r\n").encode()
                self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")

        def _handle(self, method: str) -> None:
            url = urllib.parse.urlsplit(self.path)
            query = dict(urllib.parse.parse_qsl(url.query))
            path = url.path.removeprefix(f"/v{API_VERSION}")
            body = self._body()
            daemon.requests.append({"method": method, "path": path, "query": query, "body": body})
            if path == "/version":
                self._json(200, {"ApiVersion": API_VERSION, "Version": "26.1.0"})
            elif path == "/build":
                if daemon.fail_build:
                    self._stream(
                        [
                            {"stream": "Step 1/2 : FROM nowhere\n"},
                            {"error": "pull access denied for nowhere", "errorDetail": {}},
                        ]
                    )
                    return
                image_id = f"{len(daemon.builds()):064x}"
                self._stream(
                    [
                        {"stream": "Step 1/1 : FROM scratch\n"},
                        {"aux": {"ID": f"sha256:{image_id}"}},
                        {"stream": f"Successfully built {image_id[:12]}\n"},
                    ]
                )
            elif path.startswith("/images/") and path.endswith("/json"):
                self._json(200, {"Id": path.split("/")[2], "RepoTags": [], "RepoDigests": []})
            elif path.endswith("/push"):
                tag = query.get("tag", "latest")
                self._stream(
                    [
                        {"status": "The push refers to repository"},
                        {"status": f"{tag}: digest: {DIGEST} size: 1234"},
                        {"progressDetail": {}, "aux": {"Tag": tag, "Digest": DIGEST, "Size": 1}},
                    ]
                )
            else:
                self._json(404, {"message": f"no route {method} {path}"})

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

    return Handler


@pytest.fixture
def daemon() -> Iterator[FakeDaemon]:
    # A short folder: Unix socket paths are limited to about a hundred bytes.
    folder = tempfile.mkdtemp()
    fake = FakeDaemon(socket=f"{folder}/docker.sock")
    server = socketserver.ThreadingUnixStreamServer(fake.socket, _handler(fake))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        Path(fake.socket).unlink(missing_ok=True)
        Path(folder).rmdir()


def _context_names(body: bytes) -> set[str]:
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        return {member.name for member in tar.getmembers() if member.isfile()}


# --- the plan -----------------------------------------------------------------------------


def test_the_plan_tags_every_progdef_image_with_its_version() -> None:
    catalogue = load_catalogue(PROGDEFS)
    plan = plan_images(catalogue, registry="registry.invalid:5000/team/")
    assert [image.image for image in plan[:3]] == [
        "dagyo-executor",
        "dagyo-scheduler",
        "dagyo-executor-node",
    ]
    progdefs = {image.progdef: image for image in plan[3:]}
    assert set(progdefs) == set(SAMPLE_PROGDEFS)
    for name, image in progdefs.items():
        version = catalogue[name].version
        base = plan[2] if catalogue[name].runtime == "node" else plan[0]
        assert image.tag == f"registry.invalid:5000/team/dagyo-{name}:{version}"
        assert image.buildargs == {"BASE_IMAGE": base.tag, "DAGYO_PROGDEF_VERSION": version}
        assert image.context == (PROGDEFS / name).resolve()
        assert image.dockerfile == "Dockerfile"


def test_naming_progdefs_builds_those_and_the_base_only() -> None:
    plan = plan_images(load_catalogue(PROGDEFS), ["greet"])
    assert [image.image for image in plan] == ["dagyo-executor", "dagyo-greet"]
    plan = plan_images(load_catalogue(PROGDEFS), ["greet"], base_image="registry.invalid/base:1")
    assert [image.image for image in plan] == ["dagyo-greet"]
    assert plan[0].buildargs["BASE_IMAGE"] == "registry.invalid/base:1"


def test_build_print_shows_the_plan_without_a_daemon(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    catalogue = load_catalogue(PROGDEFS)
    result = CliRunner().invoke(build, ["--print", "--progdefs", str(PROGDEFS)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 3 + len(SAMPLE_PROGDEFS)  # two base images and the scheduler
    for name, progdef in catalogue.items():
        assert sum(line.startswith(f"dagyo-{name}:{progdef.version} ") for line in lines) == 1
    result = CliRunner().invoke(
        build, ["--print", "--json", "greet", "--registry", "registry.invalid"]
    )
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    assert [entry["image"] for entry in plan] == ["dagyo-executor", "dagyo-greet"]
    assert plan[1]["tag"] == f"registry.invalid/dagyo-greet:{catalogue['greet'].version}"
    assert plan[1]["buildargs"]["DAGYO_PROGDEF_VERSION"] == catalogue["greet"].version


def test_a_registry_docker_would_refuse_is_refused_before_building() -> None:
    result = CliRunner().invoke(build, ["--print", "--registry", "Registry/Team"])
    assert result.exit_code == 2
    assert "must be lowercase HOST[:PORT][/PATH]" in result.output
    result = CliRunner().invoke(deploy, ["--dry-run", "--registry", "Registry/Team"])
    assert result.exit_code == 2
    assert "must be lowercase HOST[:PORT][/PATH]" in result.output


def test_an_unknown_progdef_is_named_with_a_suggestion() -> None:
    result = CliRunner().invoke(build, ["--print", "gret", "--progdefs", str(PROGDEFS)])
    assert result.exit_code == 2
    assert "no progdef named 'gret'" in result.output and "'greet'" in result.output


# --- no daemon ----------------------------------------------------------------------------


def test_no_daemon_is_one_clear_error_from_the_real_sdk() -> None:
    with pytest.raises(DockerUnavailable) as caught:
        connect_docker(base_url="unix:///nonexistent")
    message = str(caught.value)
    assert "cannot reach the Docker daemon at unix:///nonexistent" in message
    assert "DOCKER_HOST" in message and "--print" in message
    assert isinstance(caught.value.__cause__, docker.errors.DockerException)


@pytest.mark.parametrize("host", ["unix:///nonexistent/docker.sock", "tcp://127.0.0.1:9"])
def test_build_without_a_daemon_exits_3_with_one_line(
    monkeypatch: pytest.MonkeyPatch, host: str
) -> None:
    monkeypatch.setenv("DOCKER_HOST", host)
    result = CliRunner().invoke(build, ["greet", "--progdefs", str(PROGDEFS)])
    assert result.exit_code == 3
    assert result.output.count("\n") == 1
    assert result.output.startswith(f"dagyo: cannot reach the Docker daemon at {host}")
    assert "DOCKER_HOST" in result.output
    assert "Traceback" not in result.output


# --- building and pushing through the SDK -------------------------------------------------


def test_build_sends_the_plan_and_the_context_to_the_daemon(daemon: FakeDaemon) -> None:
    catalogue = load_catalogue(PROGDEFS)
    plan = plan_images(catalogue, ["greet", "count"], base_image="registry.invalid/base:1")
    client = connect_docker(base_url=daemon.base_url)
    done = build_all(client, plan)
    assert [reference for _, reference in done] == [image.tag for image in plan]
    builds = daemon.builds()
    assert len(builds) == 2
    for image, request in zip(plan, builds, strict=True):
        query = request["query"]
        assert query["t"] == image.tag
        assert query["dockerfile"] == "Dockerfile"
        assert query["rm"] in ("1", "True", "true")
        assert json.loads(query["buildargs"]) == {
            "BASE_IMAGE": "registry.invalid/base:1",
            "DAGYO_PROGDEF_VERSION": catalogue[image.progdef].version,
        }
        names = _context_names(request["body"])
        assert {"Dockerfile", "progdef.json", "main.py"} <= names
    assert not daemon.pushes()


def test_the_context_leaves_out_what_dockerignore_names(daemon: FakeDaemon, tmp_path: Path) -> None:
    catalogue_dir = copy_catalogue(tmp_path, ("greet",))
    (catalogue_dir / "greet" / "__pycache__").mkdir()
    (catalogue_dir / "greet" / "__pycache__" / "main.cpython-311.pyc").write_bytes(b"\0")
    before = load_catalogue(catalogue_dir)["greet"].version
    plan = plan_images(load_catalogue(catalogue_dir), ["greet"], base_image="b:1")
    build_all(connect_docker(base_url=daemon.base_url), plan)
    names = _context_names(daemon.builds()[0]["body"])
    assert not [name for name in names if "__pycache__" in name]
    assert load_catalogue(catalogue_dir)["greet"].version == before


def test_a_progdefs_protos_are_compiled_into_its_image(daemon: FakeDaemon, tmp_path: Path) -> None:
    catalogue_dir = copy_catalogue(tmp_path, ("distance",))
    folder = catalogue_dir / "distance"
    (folder / "types.binpb").unlink()  # a progdef as its author writes it: .proto files only
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "main.cpython-311.pyc").write_bytes(b"\0")
    catalogue = load_catalogue(catalogue_dir)
    before = catalogue["distance"].version
    plan = plan_images(catalogue, ["distance"], base_image="b:1")
    build_all(connect_docker(base_url=daemon.base_url), plan)
    [request] = daemon.builds()
    assert request["query"]["dockerfile"] == "Dockerfile"
    image = tmp_path / "image"  # what COPY . /progdef puts in the image
    with tarfile.open(fileobj=io.BytesIO(request["body"])) as tar:
        tar.extractall(image, filter="data")
    names = {p.relative_to(image).as_posix() for p in image.rglob("*") if p.is_file()}
    assert names == {
        "Dockerfile",
        "__init__.py",
        "geo.proto",
        "main.py",
        "progdef.json",
        "types.binpb",
    }
    # compiled as proto/generate.py compiles the checked-in one
    assert (image / "types.binpb").read_bytes() == (
        PROGDEFS / "distance" / "types.binpb"
    ).read_bytes()
    assert not (folder / "types.binpb").exists(), "the author's folder is left as it was"
    assert load_catalogue(catalogue_dir)["distance"].version == before
    # The image's executor loads its types with no protobuf compiler and no .proto source.
    (image / "geo.proto").unlink()
    script = (
        "import sys; sys.modules['grpc_tools'] = None\n"
        "from executor.core.progdef import load_progdef\n"
        "from executor.core.types import message_class\n"
        f"load_progdef({str(image)!r})\n"
        "print(message_class('acme.geo.Point').DESCRIPTOR.fields_by_name['at'].message_type.full_name)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "google.protobuf.Timestamp"


def test_push_records_the_digest_and_deploy_pins_it(
    daemon: FakeDaemon, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", daemon.base_url)
    lock = tmp_path / "images.lock.json"
    args = ["greet", "--push", "--registry", "registry.invalid:5000/team", "--lock", str(lock)]
    result = CliRunner().invoke(build, [*args, "--base-image", "registry.invalid:5000/team/base:1"])
    assert result.exit_code == 0, result.output
    version = load_catalogue(PROGDEFS)["greet"].version
    tag = f"registry.invalid:5000/team/dagyo-greet:{version}"
    pinned = f"registry.invalid:5000/team/dagyo-greet@{DIGEST}"
    assert pinned in result.output
    (push,) = daemon.pushes()
    assert push["path"] == "/images/registry.invalid:5000/team/dagyo-greet/push"
    assert push["query"]["tag"] == version
    assert read_lock(lock) == {tag: pinned}
    args = ["--dry-run", "--registry", "registry.invalid:5000/team", "--lock", str(lock)]
    # The other progdefs were not pushed: they have no digest, so deploy refuses them...
    result = CliRunner().invoke(deploy, args)
    assert result.exit_code == 2, result.output
    assert "registry.invalid:5000/team/dagyo-count:" in result.output
    assert "(progdef greet)" not in result.output
    # ...unless told to deploy them by tag.
    result = CliRunner().invoke(deploy, [*args, "--allow-tags"])
    assert result.exit_code == 0, result.output
    assert f"image: {pinned}\n" in result.output
    assert "image: registry.invalid:5000/team/dagyo-count:" in result.output


def test_deploy_runs_every_image_by_the_digest_in_the_lock(tmp_path: Path) -> None:
    registry = "registry.invalid:5000/team"
    lock = tmp_path / "images.lock.json"
    plan = plan_images(load_catalogue(PROGDEFS), registry=registry, base_image="b@" + DIGEST)
    tags = [image.tag for image in plan] + [scheduler_image_tag(registry)]
    for tag in tags:
        record_digest(lock, tag, f"{tag.rpartition(':')[0]}@{DIGEST}")
    result = CliRunner().invoke(deploy, ["--dry-run", "--registry", registry, "--lock", str(lock)])
    assert result.exit_code == 0, result.output
    images = [line.split("image: ")[1] for line in result.output.splitlines() if "image: " in line]
    # dagyo's images, all by digest; RabbitMQ's (the operator's cluster) is its release's tag.
    assert [image for image in images if not image.startswith(registry)] == [
        "rabbitmq:3.13.7-management"
    ]
    images = [image for image in images if image.startswith(registry)]
    assert len(images) == len(SAMPLE_PROGDEFS) + 1
    assert all(image.endswith(f"@{DIGEST}") for image in images), images
    assert f"{registry}/dagyo-scheduler@{DIGEST}" in images


def test_a_failed_build_names_the_image_and_exits_1(
    daemon: FakeDaemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    daemon.fail_build = True
    plan = plan_images(load_catalogue(PROGDEFS), ["greet"], base_image="b:1")
    with pytest.raises(ImageBuildFailed, match="building dagyo-greet:.* failed") as caught:
        build_all(connect_docker(base_url=daemon.base_url), plan)
    assert "pull access denied" in str(caught.value)
    monkeypatch.setenv("DOCKER_HOST", daemon.base_url)
    result = CliRunner().invoke(build, ["greet", "--base-image", "b:1"])
    assert result.exit_code == 1
    assert "Traceback" not in result.output


def test_the_lock_keeps_one_digest_per_repository(tmp_path: Path) -> None:
    lock = tmp_path / "deploy" / "images.lock.json"
    record_digest(lock, "registry.invalid:5000/dagyo-greet:aaaa", "r/dagyo-greet@sha256:1")
    record_digest(lock, "registry.invalid:5000/dagyo-count:cccc", "r/dagyo-count@sha256:2")
    record_digest(lock, "registry.invalid:5000/dagyo-greet:bbbb", "r/dagyo-greet@sha256:3")
    assert read_lock(lock) == {
        "registry.invalid:5000/dagyo-count:cccc": "r/dagyo-count@sha256:2",
        "registry.invalid:5000/dagyo-greet:bbbb": "r/dagyo-greet@sha256:3",
    }
    lock.write_text("not json")
    result = CliRunner().invoke(deploy, ["--dry-run", "--allow-tags", "--lock", str(lock)])
    assert result.exit_code == 2 and "not an image lock" in result.output
