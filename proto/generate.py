"""Regenerate the Python code for proto/ into executor/pb/ and scheduler/pb/.

Usage:
    python proto/generate.py            # write executor/pb/ and scheduler/pb/
    python proto/generate.py --check    # exit 1 when either is stale

The wire messages both programs share (dagyo.v1's job, frame, events and failure, and
dagyo.types) go to ``executor/pb/``, which every progdef image installs; the scheduler's
own gRPC API (dagyo.v1's scheduler.proto) and KEDA's external scaler go to
``scheduler/pb/``. protoc writes imports such as ``from dagyo.v1 import failure_pb2``;
they are rewritten to the package each module went to (``from executor.pb.dagyo.v1 import
failure_pb2``) instead of claiming a top-level ``dagyo`` package.
"""

from __future__ import annotations

import argparse
import filecmp
import re
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
# Where each generated tree goes: the shared wire first, then the scheduler's.
OUT_DIRS = {"executor.pb": ROOT / "executor" / "pb", "scheduler.pb": ROOT / "scheduler" / "pb"}
# The scheduler's own: the gRPC API and the vendored KEDA external scaler.
SCHEDULER_ONLY = ("dagyo/v1/scheduler.proto", "externalscaler/externalscaler.proto")
# dagyo's own packages and the vendored KEDA external scaler's.
IMPORT = re.compile(r"^from (dagyo|externalscaler)(\.[\w.]+)? import (\w+)", re.MULTILINE)


def generate(out_dirs: dict[str, Path]) -> None:
    """Run protoc (grpcio-tools) on every .proto under proto/ into out_dirs."""
    from grpc_tools import protoc  # a dev dependency: only needed to regenerate

    include = Path(protoc.__file__).parent / "_proto"
    sources = sorted(str(p.relative_to(PROTO_DIR)) for p in PROTO_DIR.rglob("*.proto"))
    packages = {
        source.removesuffix(".proto"): "scheduler.pb" if source in SCHEDULER_ONLY else "executor.pb"
        for source in sources
    }
    for package, out_dir in out_dirs.items():
        mine = [source for source in sources if packages[source.removesuffix(".proto")] == package]
        args = [
            "protoc",
            f"-I{PROTO_DIR}",
            f"-I{include}",
            f"--python_out={out_dir}",
            f"--pyi_out={out_dir}",
            f"--grpc_python_out={out_dir}",
            *mine,
        ]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
        for path in list(out_dir.rglob("*_pb2_grpc.py")):
            if "Stub" not in path.read_text():  # protoc writes one for every file, service or not
                path.unlink()

        def rewrite(m: re.Match[str]) -> str:
            module = f"{m.group(1)}{m.group(2) or ''}".replace(".", "/")
            name = m.group(3).removesuffix("_grpc").removesuffix("_pb2")
            home = packages[f"{module}/{name}"]
            return f"from {home}.{m.group(1)}{m.group(2) or ''} import {m.group(3)}"

        for path in out_dir.rglob("*.py*"):
            path.write_text(IMPORT.sub(rewrite, path.read_text()))
        for folder in [out_dir, *[p for p in out_dir.rglob("*") if p.is_dir()]]:
            (folder / "__init__.py").touch()
    # The built-in stream types' source, for the imports of progdefs' own .proto files.
    shutil.copyfile(
        PROTO_DIR / "dagyo" / "types.proto", out_dirs["executor.pb"] / "dagyo" / "types.proto"
    )


def _same_tree(a: Path, b: Path) -> bool:
    def files(root: Path) -> list[Path]:
        return sorted(
            p.relative_to(root)
            for p in root.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts
        )

    files_a = files(a)
    return files_a == files(b) and all(filecmp.cmp(a / f, b / f, shallow=False) for f in files_a)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when the code is stale")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        fresh = {package: Path(tmp) / package for package in OUT_DIRS}
        for folder in fresh.values():
            folder.mkdir()
        generate(fresh)
        if args.check:
            failed = False
            for package, out_dir in OUT_DIRS.items():
                if not _same_tree(fresh[package], out_dir):
                    where = out_dir.relative_to(ROOT)
                    print(f"{where}/ is stale: run `python proto/generate.py`", file=sys.stderr)
                    failed = True
            stale = compile_sample_types(check=True)
            for path in stale:
                print(
                    f"{path.relative_to(ROOT)} is stale: run `python proto/generate.py`",
                    file=sys.stderr,
                )
            return 1 if stale or failed else 0
        for package, out_dir in OUT_DIRS.items():
            shutil.rmtree(out_dir, ignore_errors=True)
            shutil.copytree(fresh[package], out_dir)
            print(f"wrote {out_dir.relative_to(ROOT)}")
    stale = compile_sample_types(check=args.check)
    if stale:
        for path in stale:
            print(
                f"{path.relative_to(ROOT)} is stale: run `python proto/generate.py`",
                file=sys.stderr,
            )
        return 1
    return 0


def compile_sample_types(*, check: bool) -> list[Path]:
    """Compile the protos of each sample progdef into its types.binpb (checked in, so
    neither an image nor ``dagyo run`` needs a protobuf compiler); return the stale ones."""
    import json

    sys.path.insert(0, str(ROOT))
    from executor.core.registry import COMPILED_FILE, compile_protos

    stale = []
    for progdef_json in sorted((ROOT / "progdefs").glob("*/progdef.json")):
        protos = json.loads(progdef_json.read_text()).get("protos") or []
        if not protos:
            continue
        folder = progdef_json.parent
        target = folder / COMPILED_FILE
        data = compile_protos(folder, protos, source=str(progdef_json))
        if check:
            if not target.is_file() or target.read_bytes() != data:
                stale.append(target)
        else:
            target.write_bytes(data)
    return stale


if __name__ == "__main__":
    sys.exit(main())
