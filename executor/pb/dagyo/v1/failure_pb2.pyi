from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FailureKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FAILURE_KIND_UNSPECIFIED: _ClassVar[FailureKind]
    FAILURE_KIND_PANIC: _ClassVar[FailureKind]
    FAILURE_KIND_LOST: _ClassVar[FailureKind]
    FAILURE_KIND_DEADLINE: _ClassVar[FailureKind]
    FAILURE_KIND_CANCELLED: _ClassVar[FailureKind]
    FAILURE_KIND_BROKER: _ClassVar[FailureKind]
    FAILURE_KIND_DEADLOCK: _ClassVar[FailureKind]
    FAILURE_KIND_STOPPED: _ClassVar[FailureKind]
FAILURE_KIND_UNSPECIFIED: FailureKind
FAILURE_KIND_PANIC: FailureKind
FAILURE_KIND_LOST: FailureKind
FAILURE_KIND_DEADLINE: FailureKind
FAILURE_KIND_CANCELLED: FailureKind
FAILURE_KIND_BROKER: FailureKind
FAILURE_KIND_DEADLOCK: FailureKind
FAILURE_KIND_STOPPED: FailureKind

class FailureReport(_message.Message):
    __slots__ = ("flow_id", "node", "progdef", "executor", "error", "traceback", "kind", "time")
    FLOW_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    PROGDEF_FIELD_NUMBER: _ClassVar[int]
    EXECUTOR_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    TRACEBACK_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    flow_id: str
    node: str
    progdef: str
    executor: str
    error: str
    traceback: str
    kind: FailureKind
    time: float
    def __init__(self, flow_id: _Optional[str] = ..., node: _Optional[str] = ..., progdef: _Optional[str] = ..., executor: _Optional[str] = ..., error: _Optional[str] = ..., traceback: _Optional[str] = ..., kind: _Optional[_Union[FailureKind, str]] = ..., time: _Optional[float] = ...) -> None: ...
