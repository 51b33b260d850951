"""Deploying a catalogue: images per progdef, Kubernetes objects, server-side apply.

``images`` names and plans the images and keeps the image lock; ``builder`` builds and
pushes them through the Docker SDK; ``manifests`` renders one progdef's objects and
``catalogue`` the whole catalogue with the scheduler (``triggers`` its trigger folder and
HTTP endpoint); ``platform`` what it runs on (``broker``: RabbitMQ, ``database``: the
development PostgreSQL, the schedulers' Service and budget); ``settings`` holds what the
options choose and ``yaml_text`` prints the objects; ``apply`` sends them to a cluster;
``prune`` deletes the objects of the progdef versions the scheduler retired.
``dagyo build`` and ``dagyo deploy`` (scheduler/cli/deploy.py) only parse arguments and
call these. ``apply`` and ``builder`` need the deploy extra (kubernetes, docker): they are
imported on first use, so the rest works on a core install.
"""

from scheduler._lazy import lazy_exports
from scheduler.deploy.catalogue import render_catalogue
from scheduler.deploy.images import ImageBuild, plan_images, read_lock
from scheduler.deploy.settings import (
    DeploySettings,
)
from scheduler.deploy.yaml_text import to_yaml
from scheduler.errors import (
    ApplyFailed,
    ClusterUnavailable,
    DockerUnavailable,
    ImageBuildFailed,
    ManifestError,
    RuntimeSourcesMissing,
)

__all__ = [
    "ApplyFailed",
    "ClusterUnavailable",
    "DeploySettings",
    "DockerUnavailable",
    "ImageBuild",
    "ImageBuildFailed",
    "ManifestError",
    "RuntimeSourcesMissing",
    "apply_objects",
    "build_all",
    "connect_cluster",
    "connect_docker",
    "plan_images",
    "read_lock",
    "render_catalogue",
    "to_yaml",
]

__getattr__ = lazy_exports(
    __name__,
    {
        "apply_objects": "scheduler.deploy.apply",
        "connect_cluster": "scheduler.deploy.apply",
        "build_all": "scheduler.deploy.builder",
        "connect_docker": "scheduler.deploy.builder",
    },
)
