"""Regenerate the Python code for proto/ into executor/pb/.

Usage:
    python proto/generate.py            # write executor/pb/
    python proto/generate.py --check    # exit 1 when executor/pb/ is stale

protoc writes imports such as ``from dagyo.v1 import failure_pb2``; they are rewritten to
``from executor.pb.dagyo.v1 import failure_pb2`` so the generated code lives inside the
``executor`` package instead of claiming a top-level ``dagyo`` package.
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
OUT_DIR = ROOT / "executor" / "pb"
PACKAGE = "executor.pb"
# dagyo's own packages and the vendored KEDA external scaler's.
IMPORT = re.compile(r"^from (dagyo|externalscaler)(\.[\w.]+)? import (\w+)", re.MULTILINE)


def generate(out_dir: Path) -> None:
    """Run protoc (grpcio-tools) on every .proto under proto/ into out_dir."""
    from grpc_tools import protoc  # a dev dependency: only needed to regenerate

    include = Path(protoc.__file__).parent / "_proto"
    sources = sorted(str(p.relative_to(PROTO_DIR)) for p in PROTO_DIR.rglob("*.proto"))
    args = [
        "protoc",
        f"-I{PROTO_DIR}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *sources,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    for path in list(out_dir.rglob("*_pb2_grpc.py")):
        if "Stub" not in path.read_text():  # protoc writes one for every file, service or not
            path.unlink()
    for path in out_dir.rglob("*.py*"):
        text = IMPORT.sub(
            lambda m: f"from {PACKAGE}.{m.group(1)}{m.group(2) or ''} import {m.group(3)}",
            path.read_text(),
        )
        path.write_text(text)
    for folder in [out_dir, *[p for p in out_dir.rglob("*") if p.is_dir()]]:
        (folder / "__init__.py").touch()
    # The built-in stream types' source, for the imports of progdefs' own .proto files.
    shutil.copyfile(PROTO_DIR / "dagyo" / "types.proto", out_dir / "dagyo" / "types.proto")


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
    parser.add_argument("--check", action="store_true", help="fail when executor/pb/ is stale")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / "pb"
        fresh.mkdir()
        generate(fresh)
        if args.check:
            if not _same_tree(fresh, OUT_DIR):
                print("executor/pb/ is stale: run `python proto/generate.py`", file=sys.stderr)
                return 1
            stale = compile_sample_types(check=True)
            for path in stale:
                print(
                    f"{path.relative_to(ROOT)} is stale: run `python proto/generate.py`",
                    file=sys.stderr,
                )
            return 1 if stale else 0
        shutil.rmtree(OUT_DIR, ignore_errors=True)
        shutil.copytree(fresh, OUT_DIR)
    print(f"wrote {OUT_DIR.relative_to(ROOT)}")
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
    from executor.registry import COMPILED_FILE, compile_protos

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
