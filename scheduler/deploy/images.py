"""Container images: their names and versions, the build plan, and the image lock.

Three kinds of image make a deployment:

* ``dagyo-executor``, the executor base image (``executor/Dockerfile.base``, built from a
  dagyo source checkout), tagged with a content hash of the ``executor`` package;
* ``dagyo-scheduler`` (``scheduler/Dockerfile``, also from a checkout), tagged with a
  content hash of the distribution's sources;
* ``dagyo-<progdef>``, one per progdef, built FROM the base image out of the progdef's
  build context and tagged with the progdef's version
  (:func:`executor.core.version.progdef_version`), the same hash that names its mailbox. A
  progdef with ``protos`` and no compiled ``types.binpb`` in its folder gets one compiled
  into its build context, beside progdef.json, so its executor needs no protobuf compiler.

:mod:`scheduler.deploy.builder` builds and pushes the plan. After a push, the
registry's digest of each image is recorded in the image lock
(``deploy/images.lock.json`` by default) as ``{"images": {TAG: REPOSITORY@DIGEST}}``;
``dagyo deploy`` then pins every image it finds there by digest, and refuses an image
it would run by tag alone unless told ``--allow-tags``: the digest is what an operator
approved, and a tag can be pushed again.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import executor
from executor.core.errors import DagyoError
from executor.core.progdef import Progdef, find_progdef
from executor.core.registry import COMPILED_FILE, compiled_types
from executor.core.version import context_files
from scheduler.errors import InvalidReference, RuntimeSourcesMissing

BASE_IMAGE = "dagyo-executor"
NODE_BASE_IMAGE = "dagyo-executor-node"
NODE_BASE_DOCKERFILE = "sdks/js/Dockerfile.base"
# What sdks/js/Dockerfile.base copies: the sources its content hash covers.
NODE_BASE_SOURCES = ("sdks/js", "proto")
SCHEDULER_IMAGE = "dagyo-scheduler"
PROGDEF_IMAGE_PREFIX = "dagyo-"
BASE_DOCKERFILE = "executor/Dockerfile.base"
SCHEDULER_DOCKERFILE = "scheduler/Dockerfile"
# What scheduler/Dockerfile copies: the sources its content hash covers.
SCHEDULER_SOURCES = ("pyproject.toml", "README.md", "scheduler", "executor", "progdefs")
DEFAULT_LOCK = Path("deploy") / "images.lock.json"
VERSION_LENGTH = 16
# An image reference as the Docker SDK accepts it: lowercase, an optional registry port.
_REFERENCE = re.compile(
    r"^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*"
    r"(:[A-Za-z0-9_][A-Za-z0-9._-]{0,127})?$"
)
# The Dockerfile of a progdef whose folder has none (and that names no other): its folder on
# the base image, as every sample progdef's Dockerfile says. Added to its build context.
DEFAULT_DOCKERFILE_NAME = ".dagyo.default.Dockerfile"
DEFAULT_DOCKERFILE = """\
ARG BASE_IMAGE=dagyo-executor:latest
FROM ${BASE_IMAGE}
ARG DAGYO_PROGDEF_VERSION
ENV DAGYO_PROGDEF_VERSION=${DAGYO_PROGDEF_VERSION}
COPY . /progdef
USER 10001:10001
STOPSIGNAL SIGTERM
CMD ["python", "-m", "executor", "/progdef"]
"""
# The executor command of a progdef image, by the progdef's runtime.
IMAGE_COMMANDS = {
    "python": ["python", "-m", "executor", "/progdef"],
    "node": ["node", "/opt/dagyo/sdk/bin/dagyo-executor.js", "/progdef"],
}
# A reference pinned by digest ends in @sha256:<64 hex digits> (a tag may come before it).
_PINNED = re.compile(r"^[^@\s]+@sha256:[0-9a-f]{64}$")


@dataclass(frozen=True, kw_only=True)
class ImageBuild:
    """One image of the build plan.

    Attributes:
        image: the repository's last component, e.g. ``dagyo-greet``.
        tag: the full reference to build, e.g. ``REGISTRY/dagyo-greet:0123456789abcdef``.
        context: the build context folder.
        dockerfile: the Dockerfile as the Docker API takes it: relative to the context
            when inside it, else absolute.
        buildargs: the ``--build-arg`` values.
        progdef: the progdef's name; empty for the base and scheduler images.
        files: files added to the build context, by their path in it (a progdef's
            compiled types); the folder itself is not changed.
    """

    image: str
    tag: str
    context: Path
    dockerfile: str
    buildargs: Mapping[str, str] = field(default_factory=dict)
    progdef: str = ""
    files: Mapping[str, bytes] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """Return the plan entry as JSON-ready data (paths relative to the working directory)."""
        return {
            "image": self.image,
            "progdef": self.progdef or None,
            "tag": self.tag,
            "context": display_path(self.context),
            "dockerfile": self.dockerfile,
            "buildargs": dict(self.buildargs),
            "adds": sorted(self.files),
        }

    def describe(self) -> str:
        """Return the one-line form ``dagyo build --print`` shows."""
        args = " ".join(f"{key}={value}" for key, value in sorted(self.buildargs.items()))
        dockerfile = (
            "(default: the progdef has no Dockerfile)"
            if self.dockerfile == DEFAULT_DOCKERFILE_NAME
            else self.dockerfile
        )
        line = f"{self.tag}  context={display_path(self.context)}  dockerfile={dockerfile}"
        line = f"{line}  {args}" if args else line
        added = sorted(name for name in self.files if name != DEFAULT_DOCKERFILE_NAME)
        return "".join([line, *(f"  adds={name}" for name in added)])


def display_path(path: Path) -> str:
    """Return path relative to the working directory when it is inside it."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix() or "."
    except ValueError:
        return path.as_posix()


def image_reference(registry: str, image: str, tag: str) -> str:
    """Return ``REGISTRY/IMAGE:TAG``, or ``IMAGE:TAG`` without a registry.

    Raises:
        InvalidReference: when Docker would refuse the reference.
    """
    registry = registry.strip().rstrip("/")
    reference = f"{registry}/{image}:{tag}" if registry else f"{image}:{tag}"
    if not _REFERENCE.match(reference):
        raise InvalidReference(
            f"{reference!r} is not an image reference Docker accepts: the registry "
            f"({registry or 'none'}) must be lowercase HOST[:PORT][/PATH], and the tag "
            "(the version) letters, digits, '_', '.' and '-'"
        )
    return reference


def split_reference(reference: str) -> tuple[str, str]:
    """Split ``REPOSITORY:TAG`` (the registry may carry a port) into repository and tag."""
    slash = reference.rfind("/")
    colon = reference.rfind(":")
    if colon > slash:
        return reference[:colon], reference[colon + 1 :]
    return reference, "latest"


def progdef_image(progdef: Progdef) -> str:
    """Return the repository name of a progdef's image, ``dagyo-<name>``."""
    return f"{PROGDEF_IMAGE_PREFIX}{progdef.name}"


# --- runtime images (from a source checkout) ----------------------------------------------


def source_root() -> Path | None:
    """Return the dagyo source checkout this code runs from, or None when installed."""
    root = Path(executor.__file__).resolve().parent.parent
    if (root / BASE_DOCKERFILE).is_file() and (root / SCHEDULER_DOCKERFILE).is_file():
        return root
    return None


def tree_version(root: Path, sources: Iterable[str]) -> str:
    """Return a content hash of files and folders under root (paths and contents)."""
    digest = hashlib.sha256()
    for source in sources:
        path = root / source
        if path.is_file():
            files = [(source, path)]
        else:
            files = [(f"{source}/{relative}", file) for relative, file in context_files(path)]
        for relative, file in files:
            digest.update(b"\0" + relative.encode() + b"\0")
            digest.update(file.read_bytes())
    return digest.hexdigest()[:VERSION_LENGTH]


def base_image_build(root: Path, registry: str) -> ImageBuild:
    """Return the plan entry of the executor base image, built from a source checkout."""
    return _checkout_image_build(root, registry, BASE_IMAGE, ["executor"], BASE_DOCKERFILE)


def node_base_image_build(root: Path, registry: str) -> ImageBuild:
    """Return the plan entry of the node executor base image (progdefs of runtime node)."""
    return _checkout_image_build(
        root, registry, NODE_BASE_IMAGE, NODE_BASE_SOURCES, NODE_BASE_DOCKERFILE
    )


def scheduler_image_build(root: Path, registry: str) -> ImageBuild:
    """Return the plan entry of the scheduler image, built from a source checkout."""
    return _checkout_image_build(
        root, registry, SCHEDULER_IMAGE, SCHEDULER_SOURCES, SCHEDULER_DOCKERFILE
    )


def _checkout_image_build(
    root: Path, registry: str, image: str, sources: Iterable[str], dockerfile: str
) -> ImageBuild:
    """An image built from a source checkout, tagged with the version of its sources."""
    return ImageBuild(
        image=image,
        tag=image_reference(registry, image, tree_version(root, sources)),
        context=root,
        dockerfile=dockerfile,
    )


def scheduler_image_tag(registry: str, root: Path | None = None) -> str:
    """Return the scheduler image ``dagyo build`` makes, or the released one when installed."""
    root = root if root is not None else source_root()
    if root is not None:
        return scheduler_image_build(root, registry).tag
    try:
        version = importlib.metadata.version("dagyo")
    except importlib.metadata.PackageNotFoundError:
        version = "latest"
    return image_reference(registry, SCHEDULER_IMAGE, version)


def progdef_image_build(progdef: Progdef, *, registry: str, base_image: str) -> ImageBuild:
    """Return the plan entry of one progdef's image.

    Raises:
        RuntimeSourcesMissing: when the progdef has no folder.
        ProgdefInvalid: when its protos do not compile.
        DagyoError: when its compiled types would fall outside its build context.
    """
    if progdef.directory is None:
        raise RuntimeSourcesMissing(f"progdef {progdef.name}: no folder to build an image from")
    version = progdef.version
    context = progdef.context_dir
    files = {}
    if progdef.protos and not (progdef.directory / COMPILED_FILE).is_file():
        target = progdef.directory.resolve() / COMPILED_FILE
        if not target.is_relative_to(context):
            raise DagyoError(
                f"progdef {progdef.name}: its folder is outside its build context {context}, "
                f"so its compiled types ({COMPILED_FILE}) cannot go beside its progdef.json "
                "in the image: set image.context to its folder or a folder above it"
            )
        source = str(progdef.directory / "progdef.json")
        compiled = compiled_types(progdef.directory, progdef.protos, source=source)
        files[target.relative_to(context).as_posix()] = compiled
    dockerfile = (progdef.directory / progdef.dockerfile).resolve()
    try:
        dockerfile_arg = dockerfile.relative_to(context).as_posix()
    except ValueError:
        dockerfile_arg = str(dockerfile)
    if not dockerfile.is_file():
        if progdef.dockerfile != "Dockerfile":
            raise DagyoError(
                f"progdef {progdef.name}: its image.dockerfile {progdef.dockerfile!r} is not "
                f"in {progdef.directory}: write it, or leave image.dockerfile out for the default"
            )
        default = DEFAULT_DOCKERFILE
        if progdef.runtime == "node":
            default = default.replace(BASE_IMAGE, NODE_BASE_IMAGE).replace(
                json.dumps(IMAGE_COMMANDS["python"]), json.dumps(IMAGE_COMMANDS["node"])
            )
        files[DEFAULT_DOCKERFILE_NAME] = default.encode()
        dockerfile_arg = DEFAULT_DOCKERFILE_NAME
    return ImageBuild(
        image=progdef_image(progdef),
        tag=image_reference(registry, progdef_image(progdef), version),
        context=context,
        dockerfile=dockerfile_arg,
        buildargs={"BASE_IMAGE": base_image, "DAGYO_PROGDEF_VERSION": version},
        progdef=progdef.name,
        files=files,
    )


def plan_images(
    catalogue: Mapping[str, Progdef],
    names: Iterable[str] = (),
    *,
    registry: str = "",
    base_image: str | None = None,
    node_base_image: str | None = None,
    root: Path | None = None,
) -> list[ImageBuild]:
    """Return the images to build, in build order: base, scheduler, then progdefs (the node
    base image before the progdefs of runtime node, when there are any).

    Args:
        catalogue: the progdef catalogue.
        names: the progdefs to build; all of them when empty (and then the scheduler too).
        registry: the registry prefix of every tag, e.g. ``REGISTRY/team``.
        base_image: an existing executor base image to build on instead of building one.
        node_base_image: the same for progdefs of runtime node.
        root: the dagyo source checkout (default: the one this code runs from, if any).

    Raises:
        ProgdefNotFound: when a name is not in the catalogue.
        RuntimeSourcesMissing: when the base image must be built but there is no checkout.
    """
    names = list(names)
    progdefs = [find_progdef(catalogue, name) for name in names or sorted(catalogue)]
    root = root if root is not None else source_root()
    plan: list[ImageBuild] = []
    if base_image is None:
        if root is None:
            raise RuntimeSourcesMissing(
                f"the executor base image is built from a dagyo source checkout "
                f"({BASE_DOCKERFILE}); pass --base-image REF to build on a published one"
            )
        base = base_image_build(root, registry)
        plan.append(base)
        base_image = base.tag
    if not names and root is not None:
        plan.append(scheduler_image_build(root, registry))
    if node_base_image is None and any(p.runtime == "node" for p in progdefs):
        if root is None:
            raise RuntimeSourcesMissing(
                f"the node executor base image is built from a dagyo source checkout "
                f"({NODE_BASE_DOCKERFILE})"
            )
        node_base = node_base_image_build(root, registry)
        plan.append(node_base)
        node_base_image = node_base.tag
    bases = {"python": base_image, "node": node_base_image or ""}
    plan.extend(
        progdef_image_build(progdef, registry=registry, base_image=bases[progdef.runtime])
        for progdef in progdefs
    )
    return plan


# --- the image lock -----------------------------------------------------------------------


def read_lock(path: Path) -> dict[str, str]:
    """Return the recorded ``tag -> REPOSITORY@DIGEST`` pins; empty when there is no lock.

    Raises:
        DagyoError: when the file exists but is not a lock.
    """
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise DagyoError(f"{path}: not an image lock ({e}); delete it and push again") from e
    images = data.get("images") if isinstance(data, dict) else None
    if not isinstance(images, dict):
        raise DagyoError(f"{path}: not an image lock (no 'images' object)")
    return {str(tag): str(pinned) for tag, pinned in images.items()}


def record_digest(path: Path, tag: str, pinned: str) -> None:
    """Record a pushed image in the lock, replacing older tags of the same repository."""
    images = read_lock(path)
    repository = split_reference(tag)[0]
    images = {t: p for t, p in images.items() if split_reference(t)[0] != repository}
    images[tag] = pinned
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"images": dict(sorted(images.items()))}, indent=2) + "\n"
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    temporary.replace(path)


def pinned_reference(tag: str, lock: Mapping[str, str]) -> str:
    """Return the digest-pinned reference recorded for tag, else the tag itself."""
    return lock.get(tag, tag)


def is_pinned(reference: str) -> bool:
    """Whether an image reference names a digest, ``REPOSITORY[:TAG]@sha256:<64 hex>``."""
    return bool(_PINNED.match(reference))
