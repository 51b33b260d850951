"""Large items through the object store: MB/s of N items of M MB each between two executor
processes of a local cluster (make_bytes -> sha256 of examples/large), through the folder
store and through an S3 server (moto's, on loopback), against copying the same bytes with
`cp`; and the peak RSS of the producing and the consuming executor. Prints JSON.

    python bench/large.py [--items 10] [--mb 100] [--stores file,s3] [--read whole,files]

``--read files`` runs a consumer that reads each item as a file (``InputStream.files()``,
bench/progdefs/sha256_files): an offloaded item is hashed as it is read from the store,
never whole in memory; ``whole`` (the default) is examples/large's sha256, which gets each
item as a message. Each run says which it used.

The flow's time includes making the bytes and hashing them (one CPU pass each), so MB/s is
end to end: bytes made, offloaded, fetched, checked and hashed. Needs RabbitMQ
(DAGYO_QUEUE) and moto[server] for the S3 store.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from common import QUEUE_URL, ROOT

from executor.core.objects import open_store
from scheduler.client.api import SchedulerClient
from scheduler.local_cluster import LocalCluster, private_catalogue
from scheduler.service.config import SchedulerSettings

MB = 1_000_000
S3_BUCKET = "dagyo-bench"


def peak_rss(pid: int) -> int:
    """The peak resident set size of a live process (VmHWM), bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmHWM for {pid}")


def copy_mb_s(total: int, workdir: Path) -> float:
    """MB/s of `cp` copying ``total`` bytes from one file to another on the same disk."""
    source, target = workdir / "cp-source", workdir / "cp-target"
    block = bytes(range(256)) * 4096
    with source.open("wb") as out:
        for _ in range(total // len(block)):
            out.write(block)
    os.sync()
    started = time.perf_counter()
    subprocess.run(["cp", str(source), str(target)], check=True)
    os.sync()
    elapsed = time.perf_counter() - started
    source.unlink()
    target.unlink()
    return total / MB / elapsed


def expected(size: int) -> str:
    block = bytes(range(256)) * 4096
    sha = hashlib.sha256()
    for _ in range(size // len(block)):
        sha.update(block)
    sha.update(block[: size % len(block)])
    return sha.hexdigest()


def through(
    store_url: str, items: int, size: int, workdir: Path, *, read: str = "whole"
) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(dir=workdir)) / "progdefs"
    large = ROOT / "examples" / "large" / "progdefs"
    catalogue = private_catalogue(large, folder, ["make_bytes"], tag="bench")
    if read == "files":  # the same name, so the flow is the same
        private_catalogue(
            ROOT / "bench" / "progdefs", folder / "files", ["sha256_files"], tag="bench"
        )
        (folder / "files" / "sha256_files").rename(folder / "sha256")
    else:
        private_catalogue(large, folder, ["sha256"], tag="bench")
    settings = SchedulerSettings(
        queue_url=QUEUE_URL,
        address="127.0.0.1:0",
        state_path=":memory:",
        progdefs=catalogue,
        metrics_port=0,
        objects_url=store_url,
    )
    env = {"DAGYO_METRICS_PORT": "-1", "PYTHONPATH": str(ROOT), "DAGYO_OBJECTS": store_url}
    env.update({k: v for k, v in os.environ.items() if k.startswith("AWS_")})
    cluster = LocalCluster.from_settings(settings, extra_env=env)
    cluster.start()
    try:
        flow = {
            "name": "large",
            "nodes": {"make": {"progdef": "make_bytes"}, "hash": {"progdef": "sha256"}},
            "edges": [{"from": "make.data", "to": "hash.data"}],
            "consts": [{"to": "make.size", "values": [{"value": size}] * items}],
            "exports": {"digest": "hash.digest"},
        }
        with SchedulerClient(cluster.address) as client:
            started = time.perf_counter()
            flow_id = client.submit(json.dumps(flow), source="large.json")
            for _ in client.watch(flow_id):
                pass
            elapsed = time.perf_counter() - started
            record = client.get(flow_id)
        digests = [json.loads(e.value_json)["text"] for e in record.exports]
        assert digests == [expected(size)] * items, record
        pids = {name: procs[0].pid for name, procs in cluster.executors.items()}
        left = open_store(store_url).children("flows/")
        return {
            "store": store_url.split(":")[0],
            "read": read,
            "mb_s": round(items * size / MB / elapsed, 1),
            "seconds": round(elapsed, 2),
            "producer_peak_rss_mb": round(peak_rss(pids["make_bytes"]) / MB),
            "consumer_peak_rss_mb": round(peak_rss(pids["sha256"]) / MB),
            "flows_left_in_store": len(left),
        }
    finally:
        cluster.stop()
        cluster.delete_mailboxes()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10)
    parser.add_argument("--mb", type=int, default=100)
    parser.add_argument("--stores", default="file,s3")
    parser.add_argument("--read", default="whole", help="whole, files, or both: whole,files")
    args = parser.parse_args()
    reads = args.read.split(",")
    size = args.mb * MB
    workdir = Path(tempfile.mkdtemp(prefix="dagyo-bench-large-"))
    results: dict[str, Any] = {"items": args.items, "item_mb": args.mb}
    try:
        results["cp_mb_s"] = round(copy_mb_s(args.items * size, workdir), 1)
        runs: list[dict[str, Any]] = []
        for store in args.stores.split(","):
            if store == "file":
                url = (workdir / "objects").as_uri()
                runs.extend(through(url, args.items, size, workdir, read=r) for r in reads)
            else:
                import boto3
                from moto.server import ThreadedMotoServer

                server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
                server.start()
                host, port = server.get_host_and_port()
                os.environ.update(
                    AWS_ACCESS_KEY_ID="bench",
                    AWS_SECRET_ACCESS_KEY="bench",
                    AWS_DEFAULT_REGION="us-east-1",
                    AWS_ENDPOINT_URL=f"http://{host}:{port}",
                )
                boto3.session.Session().client("s3").create_bucket(Bucket=S3_BUCKET)
                try:
                    url = f"s3://{S3_BUCKET}/bench"
                    runs.extend(through(url, args.items, size, workdir, read=r) for r in reads)
                finally:
                    server.stop()
        results["runs"] = runs
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
