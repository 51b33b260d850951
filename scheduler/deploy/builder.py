"""Building and pushing the build plan through the Docker SDK.

Every call goes to the daemon ``docker.from_env()`` finds (``DOCKER_HOST``, else the local
socket). An image that adds files to its build context (a progdef's compiled types) is sent
a context made here: the context's files as ``.dockerignore`` leaves them
(:func:`executor.core.version.context_files`, the files its version hashes), its Dockerfile and
the added files. What the daemon says is translated at this boundary: a daemon that is not there
is :class:`DockerUnavailable`, a failed build or push is :class:`ImageBuildFailed` with
the tail of its log, never a Docker SDK traceback.
"""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import docker
import docker.errors
import requests.exceptions

from executor.core.version import context_files
from scheduler.deploy.images import DEFAULT_LOCK, ImageBuild, record_digest, split_reference
from scheduler.errors import DockerUnavailable, ImageBuildFailed

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
# How many lines of a failed build's log the error repeats.
BUILD_LOG_TAIL_LINES = 15
# Where a made context holds a Dockerfile from outside the build context.
OUTSIDE_DOCKERFILE = ".dagyo.Dockerfile"


def connect_docker(base_url: str | None = None) -> docker.DockerClient:
    """Return a Docker SDK client that has answered a version request.

    Args:
        base_url: the daemon's address; default: the environment (``DOCKER_HOST``, else
            the local socket), as ``docker.from_env()`` reads it.

    Raises:
        DockerUnavailable: when no daemon answers there.
    """
    where = base_url or os.environ.get("DOCKER_HOST") or f"{DEFAULT_DOCKER_HOST}, DOCKER_HOST unset"
    try:
        if base_url is not None:
            return docker.DockerClient(base_url=base_url)
        return docker.from_env()
    except docker.errors.DockerException as e:
        raise DockerUnavailable(where, _reason(e)) from e


def _reason(error: BaseException) -> str:
    """Return the innermost OS error's text (e.g. "Connection refused"), else the first line."""
    seen: list[BaseException] = []
    pending: list[Any] = [error]
    while pending:
        current = pending.pop(0)
        if not isinstance(current, BaseException) or current in seen:
            continue
        seen.append(current)
        if isinstance(current, OSError) and current.strerror:
            return current.strerror
        pending.extend([current.__cause__, current.__context__, *current.args])
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text[:200]


def build_image(
    client: docker.DockerClient, image: ImageBuild, *, echo: Callable[[str], None] | None = None
) -> str:
    """Build one image of the plan and return its image id.

    Raises:
        ImageBuildFailed: with the tail of the build log when the build fails.
        DockerUnavailable: when the daemon goes away.
    """
    source: dict[str, Any] = {"path": str(image.context), "dockerfile": image.dockerfile}
    if image.files:
        context, dockerfile = build_context(image)
        source = {"fileobj": context, "custom_context": True, "dockerfile": dockerfile}
    with _docker_errors(client, f"building {image.tag}"):
        try:
            built, log = client.images.build(
                **source, tag=image.tag, buildargs=dict(image.buildargs), rm=True
            )
        except docker.errors.BuildError as e:
            tail = _log_lines(e.build_log)[-BUILD_LOG_TAIL_LINES:]
            raise ImageBuildFailed(
                "\n".join([f"building {image.tag} failed: {e.msg}", *tail])
            ) from e
    if echo is not None:
        for line in _log_lines(log):
            echo(line)
    return str(built.id)


def build_context(image: ImageBuild) -> tuple[io.BytesIO, str]:
    """The build context of an image as a tar, with its added files; and its Dockerfile's
    name in it."""
    buffer = io.BytesIO()
    dockerfile = image.dockerfile
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        names = set()
        for relative, path in context_files(image.context):
            if relative not in image.files:
                tar.add(path, arcname=relative, recursive=False)
                names.add(relative)
        if Path(dockerfile).is_absolute():
            tar.add(dockerfile, arcname=OUTSIDE_DOCKERFILE, recursive=False)
            dockerfile = OUTSIDE_DOCKERFILE
        elif dockerfile not in names and dockerfile not in image.files:
            # .dockerignored: Docker sends it all the same
            tar.add(image.context / dockerfile, arcname=dockerfile, recursive=False)
        for name, data in sorted(image.files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    return buffer, dockerfile


def push_image(client: docker.DockerClient, tag: str) -> str:
    """Push one image and return its digest-pinned reference, ``REPOSITORY@sha256:…``.

    Raises:
        ImageBuildFailed: when the registry refuses the push.
        DockerUnavailable: when the daemon goes away.
    """
    repository, version = split_reference(tag)
    digest = ""
    with _docker_errors(client, f"pushing {tag}"):
        for event in client.images.push(repository, tag=version, stream=True, decode=True):
            if "error" in event:
                raise ImageBuildFailed(
                    f"pushing {tag} failed: {event['error']} (log in with "
                    "`docker login REGISTRY`, and check --registry)"
                )
            digest = (event.get("aux") or {}).get("Digest", digest)
        if not digest:
            attrs = client.images.get(tag).attrs
            for repo_digest in attrs.get("RepoDigests") or []:
                if repo_digest.startswith(f"{repository}@"):
                    digest = repo_digest.split("@", 1)[1]
    if not digest:
        raise ImageBuildFailed(f"pushing {tag}: the registry reported no digest")
    return f"{repository}@{digest}"


def build_all(
    client: docker.DockerClient,
    plan: Iterable[ImageBuild],
    *,
    push: bool = False,
    lock: Path = DEFAULT_LOCK,
    echo: Callable[[str], None] | None = None,
) -> list[tuple[ImageBuild, str]]:
    """Build (and push) every image of the plan in order.

    Returns:
        Each image with its pinned reference after a push, else its tag.

    Raises:
        ImageBuildFailed: at the first image that fails to build or push.
        DockerUnavailable: when the daemon goes away.
    """
    done = []
    for image in plan:
        build_image(client, image, echo=echo)
        reference = image.tag
        if push:
            reference = push_image(client, image.tag)
            record_digest(lock, image.tag, reference)
        done.append((image, reference))
    return done


def _log_lines(log: Iterable[Any]) -> list[str]:
    lines: list[str] = []
    for event in log:
        if isinstance(event, dict):
            text = event.get("stream") or event.get("error") or event.get("status") or ""
        else:
            text = str(event)
        lines.extend(line for line in str(text).splitlines() if line.strip())
    return lines


@contextmanager
def _docker_errors(client: docker.DockerClient, doing: str) -> Iterator[None]:
    """Translate the Docker errors of ``doing`` (``building TAG``, ``pushing TAG``)."""
    try:
        yield
    except docker.errors.APIError as e:
        raise ImageBuildFailed(f"{doing} failed: {e.explanation or e}") from e
    except requests.exceptions.ConnectionError as e:
        raise DockerUnavailable(str(client.api.base_url), _reason(e)) from e
    except docker.errors.DockerException as e:
        raise ImageBuildFailed(f"{doing} failed: {e}") from e
