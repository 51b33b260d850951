"""The scheduler's credentials in Kubernetes, each read from a Secret.

* its certificate and key (``DAGYO_TLS_CERT``, ``DAGYO_TLS_KEY``): keys ``tls.crt`` and
  ``tls.key`` of a ``kubernetes.io/tls`` Secret, mounted as files, with ``ca.crt`` as
  ``DAGYO_TLS_CA``: what a ``dagyo`` command run in its pod (``kubectl exec``) trusts;
* the token file (``DAGYO_TOKENS``): key ``tokens.yaml`` of a Secret, mounted as a file in
  a folder (never a ``subPath``), so the kubelet updates it in place and a token deleted
  from the Secret is revoked without a restart;
* the broker URL (``DAGYO_QUEUE``): key ``url`` of the queue Secret, as a variable
  (:func:`scheduler.deploy.manifests.queue_env`).

KEDA calls the scheduler's external scaler, so it must trust the certificate: the
TriggerAuthentication rendered with the catalogue gives it ``ca.crt`` of the same Secret,
the CA that signed ``tls.crt``. Executors get none of these.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from executor.core.errors import DagyoError
from scheduler.tls import ENV_TLS_CA, ENV_TLS_CERT, ENV_TLS_KEY, ENV_TOKENS

TLS_SECRET = "dagyo-scheduler-tls"
TOKENS_SECRET = "dagyo-tokens"
TLS_CERT_KEY = "tls.crt"
TLS_KEY_KEY = "tls.key"
TLS_CA_KEY = "ca.crt"
TOKENS_KEY = "tokens.yaml"
TLS_MOUNT = "/etc/dagyo/tls"
TOKENS_MOUNT = "/etc/dagyo/tokens"
# The TriggerAuthentication that hands KEDA the CA the scheduler's certificate is signed by.
SCALER_AUTHENTICATION = "dagyo-scheduler-ca"
# Owner and group read: the scheduler runs as a user of the pod's fsGroup, which the files get.
SECRET_FILE_MODE = 0o440
# A Secret's name: a DNS subdomain (RFC 1123), as the API server checks it.
_SECRET_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def check_secret_name(option: str, name: str) -> None:
    """Check that name can name a Secret; empty means none.

    Raises:
        DagyoError: naming the option and saying what a name may hold.
    """
    if name and (len(name) > 253 or not _SECRET_NAME.match(name)):
        raise DagyoError(
            f"{option} {name!r}: not a Secret name (lowercase letters, digits, '-' and '.', "
            "starting and ending with a letter or digit)"
        )


@dataclass(frozen=True)
class Mounted:
    """What the scheduler's container and pod get to read its credentials.

    Attributes:
        env: the container's variables naming the mounted files.
        volume_mounts: the container's read-only mounts of the Secrets.
        volumes: the pod's Secret volumes.
    """

    env: list[dict[str, Any]] = field(default_factory=list)
    volume_mounts: list[dict[str, Any]] = field(default_factory=list)
    volumes: list[dict[str, Any]] = field(default_factory=list)

    def mount(self, *, volume: str, secret: str, folder: str, files: dict[str, str]) -> None:
        """Mount keys of a Secret as files of a folder; ``files`` maps variables to keys."""
        self.env.extend(
            {"name": variable, "value": f"{folder}/{key}"} for variable, key in files.items()
        )
        self.volume_mounts.append({"name": volume, "mountPath": folder, "readOnly": True})
        self.volumes.append(
            {
                "name": volume,
                "secret": {
                    "secretName": secret,
                    "items": [{"key": key, "path": key} for key in files.values()],
                    "defaultMode": SECRET_FILE_MODE,
                },
            }
        )


def scheduler_credentials(*, tls_secret: str, tokens_secret: str) -> Mounted:
    """The scheduler's certificate and token file, each from its Secret (empty: none)."""
    mounted = Mounted()
    if tls_secret:
        mounted.mount(
            volume="tls",
            secret=tls_secret,
            folder=TLS_MOUNT,
            files={ENV_TLS_CERT: TLS_CERT_KEY, ENV_TLS_KEY: TLS_KEY_KEY, ENV_TLS_CA: TLS_CA_KEY},
        )
    if tokens_secret:
        mounted.mount(
            volume="tokens",
            secret=tokens_secret,
            folder=TOKENS_MOUNT,
            files={ENV_TOKENS: TOKENS_KEY},
        )
    return mounted


def scaler_authentication_spec(tls_secret: str) -> dict[str, Any]:
    """The TriggerAuthentication spec giving KEDA's external scaler the scheduler's CA."""
    return {"secretTargetRef": [{"parameter": "caCert", "name": tls_secret, "key": TLS_CA_KEY}]}
