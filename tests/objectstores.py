"""Object stores for tests: a folder, or a real S3-protocol server (moto's) on loopback."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from tests.commands import free_port

# moto's server answers any credentials; boto3 needs some and a region to sign requests.
S3_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@contextmanager
def s3_server(bucket: str = "dagyo-test") -> Iterator[dict[str, str]]:
    """Start moto's S3 server on a free loopback port with ``bucket`` made; yield the
    environment (``AWS_*``, ``AWS_ENDPOINT_URL``) that points boto3 at it."""
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    environment = {**S3_ENVIRONMENT, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    saved = {name: os.environ.get(name) for name in environment}
    os.environ.update(environment)
    try:
        boto3.session.Session().client("s3").create_bucket(Bucket=bucket)
        yield environment
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        server.stop()
