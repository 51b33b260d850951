"""Deploying a catalogue: images per progdef, Kubernetes objects, server-side apply.

``images`` names and plans the images and keeps the image lock; ``builder`` builds and
pushes them through the Docker SDK; ``manifests`` renders one progdef's objects and
``catalogue`` the whole catalogue with the scheduler (``triggers`` its trigger folder and
HTTP endpoint); ``apply`` sends them to a cluster;
``prune`` deletes the objects of the progdef versions the scheduler retired.
``dagyo build`` and ``dagyo deploy`` (scheduler/cli/deploy.py) only parse arguments and
call these.
"""

from executor.errors import (
    ApplyFailed,
    ClusterUnavailable,
    DockerUnavailable,
    ImageBuildFailed,
    ManifestError,
    RuntimeSourcesMissing,
)
from scheduler.deploy.apply import apply_objects, connect_cluster
from scheduler.deploy.builder import build_all, connect_docker
from scheduler.deploy.catalogue import render_catalogue
from scheduler.deploy.images import ImageBuild, plan_images, read_lock
from scheduler.deploy.manifests import DeploySettings, to_yaml

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
