"""The types a job brings (its descriptor's ``types``), kept to that job.

A port of a type variable may be bound to a type only another progdef defines, so a job
carries the ``.proto`` files of its ports' types. They never change what the executor
already knows: a file it has is used as it is when the job's copy defines the same (and
the job panics, naming the file, when it defines anything else); a file it does not have
goes into a descriptor pool of the job's own, never into the process's, so a job that
redefines ``acme.geo.Point`` or ``dagyo/types.proto`` breaks itself alone. Pools are kept
for the next jobs bringing the very same files (a few, least recently used first out).
"""

from __future__ import annotations

import hashlib
import importlib
import threading
from collections import OrderedDict
from collections.abc import Iterable

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message

from executor.core.errors import DagyoError
from executor.core.registry import known_file, same_definitions
from executor.core.types import message_class

# Pools of job types kept for later jobs bringing the same files.
POOLS_KEPT = 16


class JobTypes:
    """The message classes of one job's ports: the executor's own, or the job's.

    Raises:
        DagyoError: naming the job and the file, when the job's files define differently
            a file or a message the executor already knows.
    """

    def __init__(self, data: bytes, *, source: str) -> None:
        files = descriptor_pb2.FileDescriptorSet.FromString(data).file
        new = []
        for file in files:
            known = known_file(file.name)
            if known is None:
                new.append(file)
            elif not same_definitions(known, file):
                raise DagyoError(
                    f"{source}: the job's {file.name} defines its messages differently from "
                    f"the {file.name} this executor has: a job's types never change what an "
                    "executor knows; resubmit the flow from a scheduler of the same catalogue"
                )
        default = descriptor_pool.Default()
        for file in new:
            for name in _messages(file):
                try:
                    default.FindMessageTypeByName(name)
                except KeyError:
                    continue
                raise DagyoError(
                    f"{source}: the job's {file.name} defines {name}, which this executor "
                    "knows from another file: a job's types never change what an executor "
                    "knows; resubmit the flow from a scheduler of the same catalogue"
                )
        self._pool = _pool_of(new, source) if new else None

    def message_class(self, typename: str) -> type[Message]:
        """The class of ``typename``: the job's own when it brought it, else the executor's.

        Raises:
            UnknownType: when neither defines it.
        """
        if self._pool is not None:
            try:
                descriptor = self._pool.FindMessageTypeByName(typename)
            except KeyError:
                pass
            else:
                return message_factory.GetMessageClass(descriptor)
        return message_class(typename)


_pools: OrderedDict[str, descriptor_pool.DescriptorPool] = OrderedDict()
_lock = threading.Lock()


def _pool_of(
    files: list[descriptor_pb2.FileDescriptorProto], source: str
) -> descriptor_pool.DescriptorPool:
    """A pool of ``files`` (each after its imports) over copies of the known files they
    import; the same files get the same pool."""
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.SerializeToString(deterministic=True))
    key = digest.hexdigest()
    with _lock:
        if key in _pools:
            _pools.move_to_end(key)
            return _pools[key]
    pool = descriptor_pool.DescriptorPool()
    names = {file.name for file in files}
    added: set[str] = set()

    def add_known(name: str) -> None:
        if name in added or name in names:
            return
        known = known_file(name) or _well_known(name)
        if known is None:
            raise DagyoError(f"{source}: the job's types import {name}, which nobody defines")
        for dependency in known.dependency:
            add_known(dependency)
        pool.Add(known)
        added.add(name)

    try:
        for file in files:
            for dependency in file.dependency:
                add_known(dependency)
            pool.Add(file)
    except (TypeError, ValueError) as e:
        raise DagyoError(f"{source}: the job's types do not load: {e}") from None
    with _lock:
        _pools[key] = pool
        while len(_pools) > POOLS_KEPT:
            _pools.popitem(last=False)
    return pool


def _well_known(name: str) -> descriptor_pb2.FileDescriptorProto | None:
    """A Google well-known file (``google/protobuf/timestamp.proto``), loaded on demand."""
    if not (name.startswith("google/protobuf/") and name.endswith(".proto")):
        return None
    stem = name.removeprefix("google/protobuf/").removesuffix(".proto")
    try:
        importlib.import_module(f"google.protobuf.{stem.replace('/', '.')}_pb2")
    except ImportError:
        return None
    return known_file(name)


def _messages(file: descriptor_pb2.FileDescriptorProto) -> Iterable[str]:
    """The full names of the messages (nested ones included) a file defines."""
    prefix = f"{file.package}." if file.package else ""

    def walk(scope: str, messages: Iterable[descriptor_pb2.DescriptorProto]) -> Iterable[str]:
        for message in messages:
            yield scope + message.name
            yield from walk(f"{scope}{message.name}.", message.nested_type)

    yield from walk(prefix, file.message_type)
