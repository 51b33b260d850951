from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class JobRef(_message.Message):
    __slots__ = ("flow_id", "node", "items_sent", "blocked_s", "items_received")
    class ItemsSentEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class ItemsReceivedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    FLOW_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    ITEMS_SENT_FIELD_NUMBER: _ClassVar[int]
    BLOCKED_S_FIELD_NUMBER: _ClassVar[int]
    ITEMS_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    flow_id: str
    node: str
    items_sent: _containers.ScalarMap[str, int]
    blocked_s: float
    items_received: _containers.ScalarMap[str, int]
    def __init__(self, flow_id: _Optional[str] = ..., node: _Optional[str] = ..., items_sent: _Optional[_Mapping[str, int]] = ..., blocked_s: _Optional[float] = ..., items_received: _Optional[_Mapping[str, int]] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("executor", "progdef", "version", "jobs", "draining", "mailbox", "slots")
    EXECUTOR_FIELD_NUMBER: _ClassVar[int]
    PROGDEF_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    JOBS_FIELD_NUMBER: _ClassVar[int]
    DRAINING_FIELD_NUMBER: _ClassVar[int]
    MAILBOX_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    executor: str
    progdef: str
    version: str
    jobs: _containers.RepeatedCompositeFieldContainer[JobRef]
    draining: bool
    mailbox: str
    slots: int
    def __init__(self, executor: _Optional[str] = ..., progdef: _Optional[str] = ..., version: _Optional[str] = ..., jobs: _Optional[_Iterable[_Union[JobRef, _Mapping]]] = ..., draining: _Optional[bool] = ..., mailbox: _Optional[str] = ..., slots: _Optional[int] = ...) -> None: ...

class Goodbye(_message.Message):
    __slots__ = ("executor", "mailbox")
    EXECUTOR_FIELD_NUMBER: _ClassVar[int]
    MAILBOX_FIELD_NUMBER: _ClassVar[int]
    executor: str
    mailbox: str
    def __init__(self, executor: _Optional[str] = ..., mailbox: _Optional[str] = ...) -> None: ...

class JobStarted(_message.Message):
    __slots__ = ("job", "executor")
    JOB_FIELD_NUMBER: _ClassVar[int]
    EXECUTOR_FIELD_NUMBER: _ClassVar[int]
    job: JobRef
    executor: str
    def __init__(self, job: _Optional[_Union[JobRef, _Mapping]] = ..., executor: _Optional[str] = ...) -> None: ...

class JobEnded(_message.Message):
    __slots__ = ("job", "executor", "items_sent", "items_received", "outcome", "reason")
    class ItemsSentEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class ItemsReceivedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    JOB_FIELD_NUMBER: _ClassVar[int]
    EXECUTOR_FIELD_NUMBER: _ClassVar[int]
    ITEMS_SENT_FIELD_NUMBER: _ClassVar[int]
    ITEMS_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    job: JobRef
    executor: str
    items_sent: _containers.ScalarMap[str, int]
    items_received: _containers.ScalarMap[str, int]
    outcome: str
    reason: str
    def __init__(self, job: _Optional[_Union[JobRef, _Mapping]] = ..., executor: _Optional[str] = ..., items_sent: _Optional[_Mapping[str, int]] = ..., items_received: _Optional[_Mapping[str, int]] = ..., outcome: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("time", "heartbeat", "started", "ended", "goodbye")
    TIME_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    ENDED_FIELD_NUMBER: _ClassVar[int]
    GOODBYE_FIELD_NUMBER: _ClassVar[int]
    time: float
    heartbeat: Heartbeat
    started: JobStarted
    ended: JobEnded
    goodbye: Goodbye
    def __init__(self, time: _Optional[float] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ..., started: _Optional[_Union[JobStarted, _Mapping]] = ..., ended: _Optional[_Union[JobEnded, _Mapping]] = ..., goodbye: _Optional[_Union[Goodbye, _Mapping]] = ...) -> None: ...

class Stop(_message.Message):
    __slots__ = ("flow_id", "reason", "retire_mailbox")
    FLOW_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    RETIRE_MAILBOX_FIELD_NUMBER: _ClassVar[int]
    flow_id: str
    reason: str
    retire_mailbox: str
    def __init__(self, flow_id: _Optional[str] = ..., reason: _Optional[str] = ..., retire_mailbox: _Optional[str] = ...) -> None: ...
