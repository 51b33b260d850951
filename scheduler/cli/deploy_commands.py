"""``dagyo build`` and ``dagyo deploy``: they parse arguments and call scheduler.deploy.

They need the ``deploy`` extra (kubernetes, docker), imported only when a command runs: on
a core install ``--help`` works and a command prints how to add the extra (exit 2).

Exit status: 0 done, 1 a build, push or apply failed, 2 invalid input (a malformed
progdef.json, an unknown progdef, a catalogue that cannot be rendered), 3 no Docker daemon
or Kubernetes cluster reachable.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import click

from executor.core.constants import ENV_PROGDEF_VERSION, PREFIX
from executor.core.errors import DagyoError, ProgdefInvalid
from executor.core.progdef import Progdef, load_catalogue
from scheduler.cli.common import (
    EXIT_FAILED,
    EXIT_INVALID,
    EXIT_UNREACHABLE,
    connected,
    fail,
    progdefs_option,
    scheduler_option,
)
from scheduler.cli.deploy_options import platform_options
from scheduler.deploy.catalogue import render_catalogue
from scheduler.deploy.credentials import TLS_SECRET, TOKENS_SECRET
from scheduler.deploy.images import (
    DEFAULT_LOCK,
    pinned_reference,
    plan_images,
    read_lock,
    scheduler_image_tag,
)
from scheduler.deploy.platform import render_platform
from scheduler.deploy.settings import (
    AUTOSCALERS,
    SCALERS,
    STATE_VOLUMES,
    DeploySettings,
)
from scheduler.deploy.yaml_text import to_yaml
from scheduler.errors import ApplyFailed, ClusterUnavailable, DockerUnavailable, ImageBuildFailed
from scheduler.service.config import ENV_TRIGGERS, ENV_TRIGGERS_HTTP, default_progdefs_dir

# What --tls-secret and --tokens-secret take to turn TLS or tokens off.
NONE = "none"
#: The top-level modules of the ``deploy`` extra (urllib3 comes with the kubernetes client).
DEPLOY_EXTRA = ("kubernetes", "docker", "urllib3")


def _require_extra(command: str) -> None:
    """Exit 2 with the install hint when a module of the deploy extra is missing."""
    for module in DEPLOY_EXTRA:
        try:
            importlib.import_module(module)
        except ImportError as e:
            fail(
                f"{command} needs the deploy extra ({e.name or module} is not installed): "
                "pip install 'dagyo[deploy]'",
                EXIT_INVALID,
            )


def _catalogue(progdefs_dir: Sequence[Path]) -> dict[str, Progdef]:
    if os.environ.get(ENV_PROGDEF_VERSION):
        fail(
            f"{ENV_PROGDEF_VERSION} is set: it would stand for every progdef's version; "
            "unset it to build or deploy a catalogue",
            EXIT_INVALID,
        )
    try:
        catalogue = load_catalogue(progdefs_dir or default_progdefs_dir())
    except ProgdefInvalid as e:
        fail(str(e), EXIT_INVALID)
    # An image or a deployment of a catalogue with a broken progdef would ship it broken.
    lines = [line for left in catalogue.left_out.values() for line in left.lines()]
    if lines:
        fail("\n".join(lines), EXIT_INVALID)
    return catalogue


def _lock(path: Path) -> Mapping[str, str]:
    try:
        return read_lock(path)
    except DagyoError as e:
        fail(str(e), EXIT_INVALID)


def _port(address: str) -> int:
    """The port of ``--triggers-http``: ``PORT`` or ``HOST:PORT``; 0 when not given."""
    if not address:
        return 0
    port = address.rpartition(":")[2]
    if not port.isdigit() or int(port) == 0:
        fail(
            f"--triggers-http {address!r}: a port, or host:port, e.g. 8090 (the scheduler "
            "listens on every address of its pod)",
            EXIT_INVALID,
        )
    return int(port)


def _shared_options(function: Any) -> Any:
    options = [
        progdefs_option,
        click.option(
            "--registry",
            envvar="DAGYO_REGISTRY",
            show_envvar=True,
            default="",
            help="Registry prefix of every image tag, e.g. REGISTRY/team [default: none].",
        ),
        click.option(
            "--lock",
            type=click.Path(dir_okay=False, path_type=Path),
            envvar="DAGYO_IMAGES_LOCK",
            show_envvar=True,
            default=DEFAULT_LOCK,
            show_default=True,
            help="The image lock: pushed digests, written by build --push, read by deploy.",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


@click.command("build")
@click.argument("names", nargs=-1, metavar="[PROGDEF]...")
@_shared_options
@click.option("--print", "print_plan", is_flag=True, help="Print the build plan; build nothing.")
@click.option("--json", "as_json", is_flag=True, help="With --print: the plan as JSON.")
@click.option("--push", is_flag=True, help="Push each image and record its digest in the lock.")
@click.option(
    "--base-image",
    metavar="REF",
    help="Build progdef images on this executor base image instead of building one.",
)
def build(
    names: tuple[str, ...],
    progdefs_dir: Sequence[Path],
    registry: str,
    lock: Path,
    print_plan: bool,
    as_json: bool,
    push: bool,
    base_image: str | None,
) -> None:
    """Build the executor base image, the scheduler image and one image per progdef.

    Each progdef image is tagged REGISTRY/dagyo-<progdef>:<version>, the version being the
    content hash that also names the progdef's mailbox. Naming PROGDEFs builds only those
    (and the base image they need). A progdef whose folder has no Dockerfile (and that names no
    other in image.dockerfile) gets the default one: its folder on the executor base image.

    Needs the deploy extra: pip install 'dagyo[deploy]'.
    """
    _require_extra("build")
    from scheduler.deploy.builder import build_all, connect_docker

    catalogue = _catalogue(progdefs_dir)
    try:
        plan = plan_images(catalogue, names, registry=registry, base_image=base_image)
    except DagyoError as e:
        fail(str(e), EXIT_INVALID)
    if print_plan or as_json:
        if as_json:
            click.echo(json.dumps([image.to_dict() for image in plan], indent=2))
        else:
            for image in plan:
                click.echo(image.describe())
        return
    try:
        client = connect_docker()
        for image, reference in build_all(
            client, plan, push=push, lock=lock, echo=lambda line: click.echo(line, err=True)
        ):
            click.echo(reference if push else image.tag)
    except DockerUnavailable as e:
        fail(str(e), EXIT_UNREACHABLE)
    except ImageBuildFailed as e:
        fail(str(e), EXIT_FAILED)
    if push:
        click.echo(f"dagyo: digests recorded in {lock}", err=True)


@click.command("deploy")
@_shared_options
@click.option("--dry-run", is_flag=True, help="Print the objects as YAML; apply nothing.")
@click.option(
    "--namespace",
    envvar="DAGYO_NAMESPACE",
    show_envvar=True,
    default=PREFIX,
    show_default=True,
    help="The namespace of every object (create it with deploy/k8s/ first).",
)
@click.option(
    "--scheduler-image",
    metavar="REF",
    help="The scheduler's image [default: the one `dagyo build` makes, pinned when pushed].",
)
@click.option(
    "--autoscaler",
    type=click.Choice(AUTOSCALERS),
    default=AUTOSCALERS[0],
    show_default=True,
    help="keda: a ScaledObject per progdef version; none: fixed replicas (min_executors, "
    "at least 1).",
)
@click.option(
    "--scaler",
    type=click.Choice(SCALERS),
    default=SCALERS[0],
    show_default=True,
    help="What KEDA asks: external: the scheduler (jobs waiting plus running); "
    "rabbitmq: the broker (jobs waiting only).",
)
@click.option(
    "--scaler-address",
    metavar="HOST:PORT",
    default="",
    help="The scheduler's gRPC address for KEDA [default: its Service in --namespace].",
)
@click.option(
    "--state-volume",
    type=click.Choice(STATE_VOLUMES),
    default=STATE_VOLUMES[0],
    show_default=True,
    help="The scheduler's SQLite state (with --state-secret none): on the claim from "
    "deploy/k8s/, or lost on restart.",
)
@click.option(
    "--tls-secret",
    metavar="NAME",
    default=TLS_SECRET,
    show_default=True,
    help="The Secret of the scheduler's certificate (tls.crt, tls.key; ca.crt for KEDA); "
    "none serves plain text.",
)
@click.option(
    "--tokens-secret",
    metavar="NAME",
    default=TOKENS_SECRET,
    show_default=True,
    help="The Secret whose tokens.yaml is the scheduler's token file; none runs it open.",
)
@click.option(
    "--allow-tags",
    is_flag=True,
    help="Deploy an image the lock has no digest for by its tag (refused otherwise).",
)
@click.option(
    "--triggers",
    "triggers_dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar=ENV_TRIGGERS,
    show_envvar=True,
    help="The scheduler's folder of trigger files (and the flows they name), deployed as "
    "the ConfigMap dagyo-triggers [default: no triggers].",
)
@click.option(
    "--triggers-http",
    metavar="[HOST:]PORT",
    envvar=ENV_TRIGGERS_HTTP,
    show_envvar=True,
    default="",
    help="Take CloudEvents by HTTP POST on this port of the scheduler, behind the Service "
    "dagyo-triggers (a host is ignored: the pod listens on all its addresses).",
)
@click.option(
    "--prune",
    is_flag=True,
    help="Then delete the objects of each progdef version the scheduler (--scheduler) "
    "reports retired.",
)
@platform_options
@scheduler_option
@click.option("--context", "kube_context", metavar="NAME", help="The kubeconfig context to use.")
def deploy(
    progdefs_dir: Sequence[Path],
    registry: str,
    lock: Path,
    dry_run: bool,
    namespace: str,
    scheduler_image: str | None,
    autoscaler: str,
    scaler: str,
    scaler_address: str,
    state_volume: str,
    tls_secret: str,
    tokens_secret: str,
    allow_tags: bool,
    triggers_dir: Path | None,
    triggers_http: str,
    prune: bool,
    schedulers: int,
    state_secret: str,
    lease_s: float,
    broker: str,
    queue_type: str,
    profile: str,
    address: str,
    kube_context: str | None,
) -> None:
    """Render the catalogue's Kubernetes objects, and what it runs on; server-side apply
    them.

    First RabbitMQ, three nodes and a PodDisruptionBudget (--broker), with --profile
    development a PostgreSQL of one pod and its Secret, and the schedulers' Service and
    PodDisruptionBudget. Per progdef version: a Deployment of executors on its mailbox, a
    PodDisruptionBudget and a KEDA ScaledObject, named dagyo-<progdef>-<version>, so an
    upgrade leaves the old version's executors draining its mailbox; then the catalogue
    ConfigMap and the scheduler's Deployment of --schedulers replicas, which reads its
    certificate, token file, broker URL and PostgreSQL URL from Secrets (docs/security.md).
    Every image runs by the digest `dagyo build --push` recorded in the lock; an image
    with none is refused (exit 2), unless --allow-tags deploys it by its tag. --triggers
    deploys the scheduler's trigger files (checked as the scheduler checks them),
    --triggers-http a Service for CloudEvents. --prune then deletes the objects of the old
    versions the scheduler retired (no job of them waits or runs), and of no other.

    Needs the deploy extra: pip install 'dagyo[deploy]'.
    """
    _require_extra("deploy")
    from scheduler.deploy.apply import apply_objects, connect_cluster
    from scheduler.deploy.prune import delete_objects, retired_objects

    if prune and dry_run:
        fail("--prune deletes objects from the cluster: drop --dry-run", EXIT_INVALID)
    catalogue = _catalogue(progdefs_dir)
    images = _lock(lock)
    try:
        settings = DeploySettings(
            namespace=namespace,
            registry=registry,
            images=images,
            scheduler_image=scheduler_image
            or pinned_reference(scheduler_image_tag(registry), images),
            autoscaler=autoscaler,
            scaler=scaler,
            scaler_address=scaler_address,
            state_volume=state_volume,
            tls_secret="" if tls_secret == NONE else tls_secret,
            tokens_secret="" if tokens_secret == NONE else tokens_secret,
            allow_tags=allow_tags,
            triggers_dir=triggers_dir,
            triggers_port=_port(triggers_http),
            schedulers=schedulers,
            state_secret="" if state_secret == NONE else state_secret,
            lease_s=lease_s,
            broker=broker,
            queue_type=queue_type,
            profile=profile,
        )
        objects = render_platform(settings) + render_catalogue(catalogue, settings)
    except DagyoError as e:
        fail(str(e), EXIT_INVALID)
    if dry_run:
        click.echo(to_yaml(objects), nl=False)
        return
    try:
        api_client = connect_cluster(context=kube_context)
        with api_client:
            apply_objects(
                api_client, objects, on_applied=lambda applied: click.echo(f"{applied} applied")
            )
            if prune:
                with connected(address) as scheduler:
                    versions = scheduler.versions()
                delete_objects(
                    api_client,
                    retired_objects(versions, catalogue, settings),
                    on_deleted=lambda deleted: click.echo(f"{deleted} deleted"),
                )
    except ClusterUnavailable as e:
        fail(str(e), EXIT_UNREACHABLE)
    except ApplyFailed as e:
        fail(str(e), EXIT_FAILED)
