"""Tests of `dagyo build`, `dagyo deploy` and the static manifests, and their validators.

Kubernetes objects are validated strictly against the Kubernetes 1.30 OpenAPI schemas
(kubernetes-validate); KEDA ScaledObjects and ScaledJobs against the openAPIV3Schema of
KEDA's CRDs shipped in crds/, made strict the way an API server with strict field
validation treats it (a ScaledJob's jobTargetRef against Kubernetes' JobSpec).
"""

from __future__ import annotations

import copy
import functools
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parent.parent.parent
PROGDEFS = ROOT / "progdefs"
K8S = ROOT / "deploy" / "k8s"
CRDS = Path(__file__).resolve().parent / "crds"
KUBERNETES_VERSION = "1.30"
SAMPLE_PROGDEFS = (
    "assert",
    "count",
    "distance",
    "explode",
    "fetch_like",
    "greet",
    "ignore_errors",
    "log_errors",
    "parse_int",
    "slow",
    "source",
    "unordered_cartesian_product",
    "upper",
    "void_sink",
)


def validate_kubernetes(obj: Mapping[str, Any]) -> None:
    """Validate a built-in object strictly against the Kubernetes 1.30 schema.

    Raises:
        kubernetes_validate.ValidationError: naming the first unknown or wrong field.
    """
    kubernetes_validate.validate(dict(obj), desired_version=KUBERNETES_VERSION, strict=True)


def _strict(schema: Any) -> Any:
    """Forbid fields a structural schema does not name, as strict field validation does."""
    if isinstance(schema, dict):
        schema = {key: _strict(value) for key, value in schema.items()}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [_strict(value) for value in schema]
    return schema


@functools.cache
def scaled_object_validator(kind: str = "ScaledObject") -> jsonschema.protocols.Validator:
    """Return a validator for keda.sh/v1alpha1 objects of a kind, from the shipped CRD."""
    crd = yaml.safe_load((CRDS / f"keda-{kind.lower()}.yaml").read_text())
    assert crd["spec"]["names"]["kind"] == kind
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    schema = _strict(copy.deepcopy(version["schema"]["openAPIV3Schema"]))
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def validate_scaled_object(obj: Mapping[str, Any]) -> None:
    """Validate a ScaledObject against the CRD schema, and its metadata as an ObjectMeta.

    Raises:
        jsonschema.ValidationError: for a field the CRD does not allow.
        kubernetes_validate.ValidationError: for malformed metadata.
    """
    assert obj["apiVersion"] == "keda.sh/v1alpha1" and obj["kind"] == "ScaledObject"
    scaled_object_validator().validate(dict(obj))
    # The CRD leaves metadata to the API server, which checks it as every ObjectMeta.
    validate_kubernetes({"apiVersion": "v1", "kind": "ConfigMap", "metadata": obj["metadata"]})


def validate_scaled_job(obj: Mapping[str, Any]) -> None:
    """Validate a ScaledJob against the CRD schema, its jobTargetRef as a Job's spec, and
    its metadata as an ObjectMeta.

    Raises:
        jsonschema.ValidationError: for a field the CRD does not allow.
        kubernetes_validate.ValidationError: for a malformed JobSpec or metadata.
    """
    assert obj["apiVersion"] == "keda.sh/v1alpha1" and obj["kind"] == "ScaledJob"
    scaled_object_validator("ScaledJob").validate(dict(obj))
    # KEDA's CRD embeds Kubernetes' JobSpec schema there: the same check.
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": obj["metadata"],
        "spec": obj["spec"]["jobTargetRef"],
    }
    validate_kubernetes(job)


@functools.cache
def trigger_authentication_validator() -> jsonschema.protocols.Validator:
    """Return a validator for keda.sh/v1alpha1 TriggerAuthentications from the shipped CRD."""
    crd = yaml.safe_load((CRDS / "keda-triggerauthentication.yaml").read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    schema = _strict(copy.deepcopy(version["schema"]["openAPIV3Schema"]))
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def validate_trigger_authentication(obj: Mapping[str, Any]) -> None:
    """Validate a TriggerAuthentication against the CRD schema, its metadata as an ObjectMeta.

    Raises:
        jsonschema.ValidationError: for a field the CRD does not allow.
        kubernetes_validate.ValidationError: for malformed metadata.
    """
    assert obj["apiVersion"] == "keda.sh/v1alpha1" and obj["kind"] == "TriggerAuthentication"
    trigger_authentication_validator().validate(dict(obj))
    validate_kubernetes({"apiVersion": "v1", "kind": "ConfigMap", "metadata": obj["metadata"]})


# The RabbitmqCluster (rabbitmq.com/v1beta1) fields the RabbitMQ Cluster Operator documents
# (its API reference, RabbitmqClusterSpec and RabbitmqClusterConfigurationSpec), as a strict
# JSON Schema: its CRD is not shipped here. Fields of Kubernetes' own types (resources,
# affinity, tolerations) are checked by kubernetes-validate in a Pod of their own.
_QUANTITY = {"type": ["string", "integer"], "pattern": r"^[0-9]+(\.[0-9]+)?([KMGTPE]i?|m)?$"}
RABBITMQ_CLUSTER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "rabbitmq.com/v1beta1"},
        "kind": {"const": "RabbitmqCluster"},
        "metadata": {"type": "object"},
        "spec": {
            "type": "object",
            "required": ["replicas"],
            "additionalProperties": False,
            "properties": {
                "replicas": {"type": "integer", "minimum": 0},
                "image": {"type": "string", "minLength": 1},
                "imagePullSecrets": {"type": "array"},
                "service": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "type": {"enum": ["ClusterIP", "NodePort", "LoadBalancer"]},
                        "annotations": {"type": "object"},
                        "ipFamilyPolicy": {"type": "string"},
                    },
                },
                "persistence": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"storageClassName": {"type": "string"}, "storage": _QUANTITY},
                },
                "resources": {"type": "object"},
                "affinity": {"type": "object"},
                "tolerations": {"type": "array"},
                "rabbitmq": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "additionalPlugins": {"type": "array", "items": {"type": "string"}},
                        "additionalConfig": {"type": "string", "maxLength": 2000},
                        "advancedConfig": {"type": "string", "maxLength": 100000},
                        "envConfig": {"type": "string", "maxLength": 100000},
                        "erlangInetConfig": {"type": "string", "maxLength": 2000},
                    },
                },
                "tls": {"type": "object"},
                "override": {"type": "object"},
                "skipPostDeploySteps": {"type": "boolean"},
                "terminationGracePeriodSeconds": {"type": "integer", "minimum": 0},
                "delayStartSeconds": {"type": "integer", "minimum": 0},
                "secretBackend": {"type": "object"},
            },
        },
    },
}


def validate_rabbitmq_cluster(obj: Mapping[str, Any]) -> None:
    """Validate a RabbitmqCluster against the operator's documented fields, the Kubernetes
    types it embeds in a Pod, and its metadata as an ObjectMeta.

    Raises:
        jsonschema.ValidationError: for a field the operator does not document.
        kubernetes_validate.ValidationError: for a malformed embedded type or metadata.
    """
    jsonschema.Draft7Validator(RABBITMQ_CLUSTER_SCHEMA).validate(dict(obj))
    spec = obj["spec"]
    pod_spec: dict[str, Any] = {
        "containers": [
            {"name": "rabbitmq", "image": spec.get("image", "rabbitmq"), **_only(spec, "resources")}
        ],
        **_only(spec, "affinity", "tolerations", "terminationGracePeriodSeconds"),
    }
    validate_kubernetes(
        {"apiVersion": "v1", "kind": "Pod", "metadata": obj["metadata"], "spec": pod_spec}
    )


def _only(mapping: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    return {key: mapping[key] for key in keys if key in mapping}


def validate_any(obj: Mapping[str, Any]) -> str:
    """Validate any object dagyo renders; return the name of the schema used."""
    if obj.get("kind") == "RabbitmqCluster":
        validate_rabbitmq_cluster(obj)
        return "rabbitmq"
    if obj.get("kind") == "TriggerAuthentication":
        validate_trigger_authentication(obj)
        return "keda"
    if obj.get("apiVersion", "").startswith("keda.sh/"):
        if obj["kind"] == "ScaledJob":
            validate_scaled_job(obj)
        else:
            validate_scaled_object(obj)
        return "keda"
    validate_kubernetes(obj)
    return "kubernetes"


# What the API server checks beyond the OpenAPI schema, for names and labels.
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def check_names_and_labels(obj: Mapping[str, Any]) -> None:
    """Assert the object's name is a DNS subdomain and its labels are valid, everywhere.

    The OpenAPI schemas leave these to the API server; checked here so a rendered object
    is not refused at apply time.
    """
    metadata = obj["metadata"]
    name = metadata["name"]
    assert len(name) <= 253 and _DNS_SUBDOMAIN.match(name), f"name {name!r}"
    label_sets = [metadata.get("labels", {})]
    template = obj.get("spec", {}).get("template", {}).get("metadata", {})
    label_sets.append(template.get("labels", {}))
    label_sets.append(obj.get("spec", {}).get("selector", {}).get("matchLabels", {}))
    for labels in label_sets:
        for key, value in labels.items():
            prefix, _, label = key.rpartition("/")
            assert not prefix or _DNS_SUBDOMAIN.match(prefix), f"label prefix {key!r}"
            assert len(label) <= 63 and _LABEL_NAME.match(label), f"label name {key!r}"
            assert len(value) <= 63 and _LABEL_VALUE.match(value), f"label value {value!r}"


def copy_catalogue(destination: Path, names: tuple[str, ...] = SAMPLE_PROGDEFS) -> Path:
    """Copy sample progdef folders under destination; return the catalogue folder."""
    catalogue = destination / "progdefs"
    for name in names:
        shutil.copytree(
            PROGDEFS / name, catalogue / name, ignore=shutil.ignore_patterns("__pycache__")
        )
    return catalogue
