"""The benchmarks' broker helpers look at the vhost DAGYO_QUEUE names."""

from __future__ import annotations

import importlib.util
import uuid
from types import ModuleType

import pika

from tests.conftest import ROOT


def _bench_common() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_common", ROOT / "bench" / "common.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_flow_queues_left_counts_the_vhost_of_the_queue_url(broker_url: str) -> None:
    common = _bench_common()
    common.QUEUE_URL = broker_url
    before = common.flow_queues_left()
    name = f"dagyo.flow.bench-{uuid.uuid4().hex[:8]}"
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    try:
        channel = connection.channel()
        channel.queue_declare(name, auto_delete=False)
        assert common.flow_queues_left() == before + 1
        channel.queue_delete(name)
    finally:
        connection.close()
