"""Compiling a progdef's .proto files: protoc (from grpcio-tools) into a FileDescriptorSet.

A progdef's ``protos`` name files in its folder or in its catalogue's ``protos/`` folder
(:func:`shared_protos_dir`, the files its progdefs share); their imports resolve against
both, ``dagyo/types.proto`` and the Google well-known types. A compiled set is kept per
folder and is compiled again only when a .proto file there changed: a catalogue is loaded
again at every change of it, and protoc takes a tenth of a second.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

from executor.core.errors import ProgdefInvalid

COMPILED_FILE = "types.binpb"
# The catalogue-level folder of .proto files shared by its progdefs (beside their folders).
SHARED_PROTOS_DIR = "protos"
# proto/generate.py copies dagyo/types.proto beside its generated module, so the imports
# of a progdef's .proto files resolve in a checkout and in an installed dagyo alike.
BUILTIN_PROTO_DIR = Path(__file__).resolve().parents[1] / "pb"
_COMPILE_TIMEOUT_S = 60.0
_lock = threading.Lock()
# (folder, protos, hash of the .proto files it may use) -> the FileDescriptorSet compiled
# from them.
_compiled: dict[tuple[Path, tuple[str, ...], str], bytes] = {}


def shared_protos_dir(directory: Path) -> Path:
    """The catalogue's ``protos/`` folder beside a progdef's folder: the .proto files every
    progdef of the catalogue may list (by their name there) and import."""
    return directory.absolute().parent / SHARED_PROTOS_DIR


def compile_protos(directory: Path, protos: Sequence[str], *, source: str) -> bytes:
    """Compile ``protos`` into a serialized FileDescriptorSet, imports and comments included.

    A name resolves in the progdef's folder, else in the catalogue's ``protos/`` folder.

    Raises:
        ProgdefInvalid: with the compiler's message (file, line and column), or when no
            compiler is installed.
    """
    try:
        import grpc_tools
    except ImportError:
        raise ProgdefInvalid(
            [
                f"{source}: compiling its protos needs grpcio-tools "
                f"(pip install grpcio-tools), or a compiled {COMPILED_FILE} from `dagyo build`"
            ]
        ) from None
    well_known = Path(grpc_tools.__file__).resolve().parent / "_proto"
    shared = shared_protos_dir(directory)
    shared_path = [f"--proto_path={shared.resolve()}"] if shared.is_dir() else []
    with tempfile.TemporaryDirectory(prefix="dagyo-protos-") as scratch:
        out = Path(scratch) / COMPILED_FILE
        command = [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"--proto_path={directory.resolve()}",
            *shared_path,
            f"--proto_path={BUILTIN_PROTO_DIR}",
            f"--proto_path={well_known}",
            f"--descriptor_set_out={out}",
            "--include_imports",
            "--include_source_info",
            *protos,
        ]
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=_COMPILE_TIMEOUT_S
            )
        except subprocess.TimeoutExpired:
            raise ProgdefInvalid(
                [f"{source}: compiling {', '.join(protos)} took over {_COMPILE_TIMEOUT_S:g} s"]
            ) from None
        if done.returncode != 0:
            # protoc names a file by its path on disk; the folder is in ``source`` already.
            folder, shared_folder = f"{directory.resolve()}/", f"{shared.resolve()}/"
            lines = [
                line.replace(folder, "").replace(shared_folder, f"{SHARED_PROTOS_DIR}/")
                for line in done.stderr.splitlines()
                if line.strip()
            ]
            raise ProgdefInvalid(
                [f"{source}: {line}" for line in lines] or [f"{source}: the protos do not compile"]
            )
        return out.read_bytes()


def compiled_types(directory: Path, protos: Sequence[str], *, source: str) -> bytes:
    """The serialized FileDescriptorSet of a folder's protos, compiled again only when a
    .proto file in the folder changed.

    Raises:
        ProgdefInvalid: see :func:`compile_protos`.
    """
    root = directory.resolve()
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.proto")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    shared = shared_protos_dir(directory)
    for path in sorted(shared.rglob("*.proto")) if shared.is_dir() else []:
        digest.update(b"\0shared\0" + path.relative_to(shared).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    key = (root, tuple(protos), digest.hexdigest())
    with _lock:
        data = _compiled.get(key)
    if data is None:
        data = compile_protos(directory, protos, source=source)
        with _lock:
            _compiled[key] = data
    return data
