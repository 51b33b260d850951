from google.protobuf import descriptor_pb2 as _descriptor_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Input(_message.Message):
    __slots__ = ("typename", "queue", "consts", "edge", "token")
    TYPENAME_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    CONSTS_FIELD_NUMBER: _ClassVar[int]
    EDGE_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    typename: str
    queue: str
    consts: Consts
    edge: str
    token: str
    def __init__(self, typename: _Optional[str] = ..., queue: _Optional[str] = ..., consts: _Optional[_Union[Consts, _Mapping]] = ..., edge: _Optional[str] = ..., token: _Optional[str] = ...) -> None: ...

class Consts(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, items: _Optional[_Iterable[bytes]] = ...) -> None: ...

class Output(_message.Message):
    __slots__ = ("typename", "queues", "token")
    TYPENAME_FIELD_NUMBER: _ClassVar[int]
    QUEUES_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    typename: str
    queues: _containers.RepeatedScalarFieldContainer[str]
    token: str
    def __init__(self, typename: _Optional[str] = ..., queues: _Optional[_Iterable[str]] = ..., token: _Optional[str] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("flow_id", "node", "progdef", "version", "inputs", "outputs", "deadline", "events_exchange", "failures_exchange", "types", "trace_context", "published")
    class InputsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Input
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Input, _Mapping]] = ...) -> None: ...
    class OutputsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Output
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Output, _Mapping]] = ...) -> None: ...
    class TraceContextEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    FLOW_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    PROGDEF_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_FIELD_NUMBER: _ClassVar[int]
    EVENTS_EXCHANGE_FIELD_NUMBER: _ClassVar[int]
    FAILURES_EXCHANGE_FIELD_NUMBER: _ClassVar[int]
    TYPES_FIELD_NUMBER: _ClassVar[int]
    TRACE_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    PUBLISHED_FIELD_NUMBER: _ClassVar[int]
    flow_id: str
    node: str
    progdef: str
    version: str
    inputs: _containers.MessageMap[str, Input]
    outputs: _containers.MessageMap[str, Output]
    deadline: float
    events_exchange: str
    failures_exchange: str
    types: _descriptor_pb2.FileDescriptorSet
    trace_context: _containers.ScalarMap[str, str]
    published: float
    def __init__(self, flow_id: _Optional[str] = ..., node: _Optional[str] = ..., progdef: _Optional[str] = ..., version: _Optional[str] = ..., inputs: _Optional[_Mapping[str, Input]] = ..., outputs: _Optional[_Mapping[str, Output]] = ..., deadline: _Optional[float] = ..., events_exchange: _Optional[str] = ..., failures_exchange: _Optional[str] = ..., types: _Optional[_Union[_descriptor_pb2.FileDescriptorSet, _Mapping]] = ..., trace_context: _Optional[_Mapping[str, str]] = ..., published: _Optional[float] = ...) -> None: ...
