from executor.pb.dagyo.v1 import failure_pb2 as _failure_pb2
from google.protobuf import descriptor_pb2 as _descriptor_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FlowState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FLOW_STATE_UNSPECIFIED: _ClassVar[FlowState]
    FLOW_STATE_PENDING: _ClassVar[FlowState]
    FLOW_STATE_RUNNING: _ClassVar[FlowState]
    FLOW_STATE_SUCCEEDED: _ClassVar[FlowState]
    FLOW_STATE_FAILED: _ClassVar[FlowState]
    FLOW_STATE_CANCELLED: _ClassVar[FlowState]

class NodeState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NODE_STATE_UNSPECIFIED: _ClassVar[NodeState]
    NODE_STATE_PENDING: _ClassVar[NodeState]
    NODE_STATE_RUNNING: _ClassVar[NodeState]
    NODE_STATE_ENDED: _ClassVar[NodeState]
    NODE_STATE_FAILED: _ClassVar[NodeState]
    NODE_STATE_STOPPED: _ClassVar[NodeState]
    NODE_STATE_CACHED: _ClassVar[NodeState]
FLOW_STATE_UNSPECIFIED: FlowState
FLOW_STATE_PENDING: FlowState
FLOW_STATE_RUNNING: FlowState
FLOW_STATE_SUCCEEDED: FlowState
FLOW_STATE_FAILED: FlowState
FLOW_STATE_CANCELLED: FlowState
NODE_STATE_UNSPECIFIED: NodeState
NODE_STATE_PENDING: NodeState
NODE_STATE_RUNNING: NodeState
NODE_STATE_ENDED: NodeState
NODE_STATE_FAILED: NodeState
NODE_STATE_STOPPED: NodeState
NODE_STATE_CACHED: NodeState

class NodeProgress(_message.Message):
    __slots__ = ("node", "progdef", "state", "executor", "items_sent", "items_received", "published", "started", "ended", "errors_sent", "version")
    NODE_FIELD_NUMBER: _ClassVar[int]
    PROGDEF_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    EXECUTOR_FIELD_NUMBER: _ClassVar[int]
    ITEMS_SENT_FIELD_NUMBER: _ClassVar[int]
    ITEMS_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    PUBLISHED_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    ENDED_FIELD_NUMBER: _ClassVar[int]
    ERRORS_SENT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    node: str
    progdef: str
    state: NodeState
    executor: str
    items_sent: int
    items_received: int
    published: float
    started: float
    ended: float
    errors_sent: int
    version: str
    def __init__(self, node: _Optional[str] = ..., progdef: _Optional[str] = ..., state: _Optional[_Union[NodeState, str]] = ..., executor: _Optional[str] = ..., items_sent: _Optional[int] = ..., items_received: _Optional[int] = ..., published: _Optional[float] = ..., started: _Optional[float] = ..., ended: _Optional[float] = ..., errors_sent: _Optional[int] = ..., version: _Optional[str] = ...) -> None: ...

class EdgeProgress(_message.Message):
    __slots__ = ("source", "target", "items_sent", "items_received", "queue_depth", "sampled")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    ITEMS_SENT_FIELD_NUMBER: _ClassVar[int]
    ITEMS_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    QUEUE_DEPTH_FIELD_NUMBER: _ClassVar[int]
    SAMPLED_FIELD_NUMBER: _ClassVar[int]
    source: str
    target: str
    items_sent: int
    items_received: int
    queue_depth: int
    sampled: float
    def __init__(self, source: _Optional[str] = ..., target: _Optional[str] = ..., items_sent: _Optional[int] = ..., items_received: _Optional[int] = ..., queue_depth: _Optional[int] = ..., sampled: _Optional[float] = ...) -> None: ...

class Export(_message.Message):
    __slots__ = ("export", "value_json")
    EXPORT_FIELD_NUMBER: _ClassVar[int]
    VALUE_JSON_FIELD_NUMBER: _ClassVar[int]
    export: str
    value_json: str
    def __init__(self, export: _Optional[str] = ..., value_json: _Optional[str] = ...) -> None: ...

class FlowRecord(_message.Message):
    __slots__ = ("id", "name", "state", "nodes", "failure", "created", "ended", "exports", "exports_truncated", "exports_dropped", "tenant", "flow_json", "waiting", "edges")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    ENDED_FIELD_NUMBER: _ClassVar[int]
    EXPORTS_FIELD_NUMBER: _ClassVar[int]
    EXPORTS_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    EXPORTS_DROPPED_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    FLOW_JSON_FIELD_NUMBER: _ClassVar[int]
    WAITING_FIELD_NUMBER: _ClassVar[int]
    EDGES_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    state: FlowState
    nodes: _containers.RepeatedCompositeFieldContainer[NodeProgress]
    failure: _failure_pb2.FailureReport
    created: float
    ended: float
    exports: _containers.RepeatedCompositeFieldContainer[Export]
    exports_truncated: bool
    exports_dropped: int
    tenant: str
    flow_json: str
    waiting: str
    edges: _containers.RepeatedCompositeFieldContainer[EdgeProgress]
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., state: _Optional[_Union[FlowState, str]] = ..., nodes: _Optional[_Iterable[_Union[NodeProgress, _Mapping]]] = ..., failure: _Optional[_Union[_failure_pb2.FailureReport, _Mapping]] = ..., created: _Optional[float] = ..., ended: _Optional[float] = ..., exports: _Optional[_Iterable[_Union[Export, _Mapping]]] = ..., exports_truncated: _Optional[bool] = ..., exports_dropped: _Optional[int] = ..., tenant: _Optional[str] = ..., flow_json: _Optional[str] = ..., waiting: _Optional[str] = ..., edges: _Optional[_Iterable[_Union[EdgeProgress, _Mapping]]] = ...) -> None: ...

class SubmitRequest(_message.Message):
    __slots__ = ("set", "flow_json", "source", "deadline_s", "no_cache")
    SET_FIELD_NUMBER: _ClassVar[int]
    FLOW_JSON_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_S_FIELD_NUMBER: _ClassVar[int]
    NO_CACHE_FIELD_NUMBER: _ClassVar[int]
    set: _containers.RepeatedScalarFieldContainer[str]
    flow_json: str
    source: str
    deadline_s: float
    no_cache: bool
    def __init__(self, set: _Optional[_Iterable[str]] = ..., flow_json: _Optional[str] = ..., source: _Optional[str] = ..., deadline_s: _Optional[float] = ..., no_cache: _Optional[bool] = ...) -> None: ...

class SubmitResponse(_message.Message):
    __slots__ = ("flow_id", "problems")
    FLOW_ID_FIELD_NUMBER: _ClassVar[int]
    PROBLEMS_FIELD_NUMBER: _ClassVar[int]
    flow_id: str
    problems: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, flow_id: _Optional[str] = ..., problems: _Optional[_Iterable[str]] = ...) -> None: ...

class GetRequest(_message.Message):
    __slots__ = ("flow_id",)
    FLOW_ID_FIELD_NUMBER: _ClassVar[int]
    flow_id: str
    def __init__(self, flow_id: _Optional[str] = ...) -> None: ...

class ListRequest(_message.Message):
    __slots__ = ("limit", "page_token")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    limit: int
    page_token: str
    def __init__(self, limit: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListResponse(_message.Message):
    __slots__ = ("flows", "next_page_token", "every_tenant")
    FLOWS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    EVERY_TENANT_FIELD_NUMBER: _ClassVar[int]
    flows: _containers.RepeatedCompositeFieldContainer[FlowRecord]
    next_page_token: str
    every_tenant: bool
    def __init__(self, flows: _Optional[_Iterable[_Union[FlowRecord, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., every_tenant: _Optional[bool] = ...) -> None: ...

class CancelRequest(_message.Message):
    __slots__ = ("flow_id",)
    FLOW_ID_FIELD_NUMBER: _ClassVar[int]
    flow_id: str
    def __init__(self, flow_id: _Optional[str] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("flow_id",)
    FLOW_ID_FIELD_NUMBER: _ClassVar[int]
    flow_id: str
    def __init__(self, flow_id: _Optional[str] = ...) -> None: ...

class WatchEvent(_message.Message):
    __slots__ = ("progress", "export", "end")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    EXPORT_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    progress: FlowRecord
    export: Export
    end: FlowRecord
    def __init__(self, progress: _Optional[_Union[FlowRecord, _Mapping]] = ..., export: _Optional[_Union[Export, _Mapping]] = ..., end: _Optional[_Union[FlowRecord, _Mapping]] = ...) -> None: ...

class FailuresRequest(_message.Message):
    __slots__ = ("flow_id", "limit", "page_token")
    FLOW_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    flow_id: str
    limit: int
    page_token: str
    def __init__(self, flow_id: _Optional[str] = ..., limit: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class FailuresResponse(_message.Message):
    __slots__ = ("failures", "next_page_token")
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    failures: _containers.RepeatedCompositeFieldContainer[_failure_pb2.FailureReport]
    next_page_token: str
    def __init__(self, failures: _Optional[_Iterable[_Union[_failure_pb2.FailureReport, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CacheListRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CacheEntry(_message.Message):
    __slots__ = ("key", "progdef", "version", "flow", "node", "size", "made", "last_used", "hits", "tenant")
    KEY_FIELD_NUMBER: _ClassVar[int]
    PROGDEF_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    FLOW_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    MADE_FIELD_NUMBER: _ClassVar[int]
    LAST_USED_FIELD_NUMBER: _ClassVar[int]
    HITS_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    key: str
    progdef: str
    version: str
    flow: str
    node: str
    size: int
    made: float
    last_used: float
    hits: int
    tenant: str
    def __init__(self, key: _Optional[str] = ..., progdef: _Optional[str] = ..., version: _Optional[str] = ..., flow: _Optional[str] = ..., node: _Optional[str] = ..., size: _Optional[int] = ..., made: _Optional[float] = ..., last_used: _Optional[float] = ..., hits: _Optional[int] = ..., tenant: _Optional[str] = ...) -> None: ...

class CacheListResponse(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[CacheEntry]
    def __init__(self, entries: _Optional[_Iterable[_Union[CacheEntry, _Mapping]]] = ...) -> None: ...

class CacheDropRequest(_message.Message):
    __slots__ = ("selector",)
    SELECTOR_FIELD_NUMBER: _ClassVar[int]
    selector: str
    def __init__(self, selector: _Optional[str] = ...) -> None: ...

class ExportItemsRequest(_message.Message):
    __slots__ = ("flow_id", "export")
    FLOW_ID_FIELD_NUMBER: _ClassVar[int]
    EXPORT_FIELD_NUMBER: _ClassVar[int]
    flow_id: str
    export: str
    def __init__(self, flow_id: _Optional[str] = ..., export: _Optional[str] = ...) -> None: ...

class ExportChunk(_message.Message):
    __slots__ = ("item", "data", "item_end", "size", "sha256", "typename")
    ITEM_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    ITEM_END_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    TYPENAME_FIELD_NUMBER: _ClassVar[int]
    item: int
    data: bytes
    item_end: bool
    size: int
    sha256: str
    typename: str
    def __init__(self, item: _Optional[int] = ..., data: _Optional[bytes] = ..., item_end: _Optional[bool] = ..., size: _Optional[int] = ..., sha256: _Optional[str] = ..., typename: _Optional[str] = ...) -> None: ...

class VersionsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ProgdefVersion(_message.Message):
    __slots__ = ("progdef", "version", "state", "waiting", "running", "executors")
    PROGDEF_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    WAITING_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    EXECUTORS_FIELD_NUMBER: _ClassVar[int]
    progdef: str
    version: str
    state: str
    waiting: int
    running: int
    executors: int
    def __init__(self, progdef: _Optional[str] = ..., version: _Optional[str] = ..., state: _Optional[str] = ..., waiting: _Optional[int] = ..., running: _Optional[int] = ..., executors: _Optional[int] = ...) -> None: ...

class VersionsResponse(_message.Message):
    __slots__ = ("versions",)
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    versions: _containers.RepeatedCompositeFieldContainer[ProgdefVersion]
    def __init__(self, versions: _Optional[_Iterable[_Union[ProgdefVersion, _Mapping]]] = ...) -> None: ...

class InvokeRequest(_message.Message):
    __slots__ = ("progdef", "input")
    PROGDEF_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    progdef: str
    input: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, progdef: _Optional[str] = ..., input: _Optional[_Iterable[str]] = ...) -> None: ...

class InvokeEvent(_message.Message):
    __slots__ = ("flow_id", "output", "end")
    FLOW_ID_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    flow_id: str
    output: Export
    end: FlowRecord
    def __init__(self, flow_id: _Optional[str] = ..., output: _Optional[_Union[Export, _Mapping]] = ..., end: _Optional[_Union[FlowRecord, _Mapping]] = ...) -> None: ...

class TriggersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TriggerFiring(_message.Message):
    __slots__ = ("event_id", "event_source", "flow_ids", "time")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_SOURCE_FIELD_NUMBER: _ClassVar[int]
    FLOW_IDS_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    event_source: str
    flow_ids: _containers.RepeatedScalarFieldContainer[str]
    time: float
    def __init__(self, event_id: _Optional[str] = ..., event_source: _Optional[str] = ..., flow_ids: _Optional[_Iterable[str]] = ..., time: _Optional[float] = ...) -> None: ...

class Trigger(_message.Message):
    __slots__ = ("name", "file", "flow", "events", "match", "tenant", "problems", "firings", "fired")
    NAME_FIELD_NUMBER: _ClassVar[int]
    FILE_FIELD_NUMBER: _ClassVar[int]
    FLOW_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    MATCH_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    PROBLEMS_FIELD_NUMBER: _ClassVar[int]
    FIRINGS_FIELD_NUMBER: _ClassVar[int]
    FIRED_FIELD_NUMBER: _ClassVar[int]
    name: str
    file: str
    flow: str
    events: str
    match: str
    tenant: str
    problems: _containers.RepeatedScalarFieldContainer[str]
    firings: _containers.RepeatedCompositeFieldContainer[TriggerFiring]
    fired: int
    def __init__(self, name: _Optional[str] = ..., file: _Optional[str] = ..., flow: _Optional[str] = ..., events: _Optional[str] = ..., match: _Optional[str] = ..., tenant: _Optional[str] = ..., problems: _Optional[_Iterable[str]] = ..., firings: _Optional[_Iterable[_Union[TriggerFiring, _Mapping]]] = ..., fired: _Optional[int] = ...) -> None: ...

class TriggersResponse(_message.Message):
    __slots__ = ("triggers",)
    TRIGGERS_FIELD_NUMBER: _ClassVar[int]
    triggers: _containers.RepeatedCompositeFieldContainer[Trigger]
    def __init__(self, triggers: _Optional[_Iterable[_Union[Trigger, _Mapping]]] = ...) -> None: ...

class CatalogueRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Port(_message.Message):
    __slots__ = ("name", "type")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: str
    def __init__(self, name: _Optional[str] = ..., type: _Optional[str] = ...) -> None: ...

class CatalogueProgdef(_message.Message):
    __slots__ = ("name", "description", "version", "inputs", "outputs", "style", "errors")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    STYLE_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    version: str
    inputs: _containers.RepeatedCompositeFieldContainer[Port]
    outputs: _containers.RepeatedCompositeFieldContainer[Port]
    style: str
    errors: str
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., version: _Optional[str] = ..., inputs: _Optional[_Iterable[_Union[Port, _Mapping]]] = ..., outputs: _Optional[_Iterable[_Union[Port, _Mapping]]] = ..., style: _Optional[str] = ..., errors: _Optional[str] = ...) -> None: ...

class TypeField(_message.Message):
    __slots__ = ("name", "type", "doc")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    DOC_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: str
    doc: str
    def __init__(self, name: _Optional[str] = ..., type: _Optional[str] = ..., doc: _Optional[str] = ...) -> None: ...

class CatalogueType(_message.Message):
    __slots__ = ("typename", "source", "doc", "fields", "used_by", "json_schema")
    TYPENAME_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    DOC_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    USED_BY_FIELD_NUMBER: _ClassVar[int]
    JSON_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    typename: str
    source: str
    doc: str
    fields: _containers.RepeatedCompositeFieldContainer[TypeField]
    used_by: _containers.RepeatedScalarFieldContainer[str]
    json_schema: str
    def __init__(self, typename: _Optional[str] = ..., source: _Optional[str] = ..., doc: _Optional[str] = ..., fields: _Optional[_Iterable[_Union[TypeField, _Mapping]]] = ..., used_by: _Optional[_Iterable[str]] = ..., json_schema: _Optional[str] = ...) -> None: ...

class LeftOutProgdef(_message.Message):
    __slots__ = ("progdef", "problems")
    PROGDEF_FIELD_NUMBER: _ClassVar[int]
    PROBLEMS_FIELD_NUMBER: _ClassVar[int]
    progdef: str
    problems: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, progdef: _Optional[str] = ..., problems: _Optional[_Iterable[str]] = ...) -> None: ...

class CatalogueResponse(_message.Message):
    __slots__ = ("progdefs", "types", "descriptor_set", "left_out")
    PROGDEFS_FIELD_NUMBER: _ClassVar[int]
    TYPES_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTOR_SET_FIELD_NUMBER: _ClassVar[int]
    LEFT_OUT_FIELD_NUMBER: _ClassVar[int]
    progdefs: _containers.RepeatedCompositeFieldContainer[CatalogueProgdef]
    types: _containers.RepeatedCompositeFieldContainer[CatalogueType]
    descriptor_set: _descriptor_pb2.FileDescriptorSet
    left_out: _containers.RepeatedCompositeFieldContainer[LeftOutProgdef]
    def __init__(self, progdefs: _Optional[_Iterable[_Union[CatalogueProgdef, _Mapping]]] = ..., types: _Optional[_Iterable[_Union[CatalogueType, _Mapping]]] = ..., descriptor_set: _Optional[_Union[_descriptor_pb2.FileDescriptorSet, _Mapping]] = ..., left_out: _Optional[_Iterable[_Union[LeftOutProgdef, _Mapping]]] = ...) -> None: ...
