from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Frame(_message.Message):
    __slots__ = ("items", "end_of_stream", "seq", "typename", "token", "offloaded")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    END_OF_STREAM_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TYPENAME_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    OFFLOADED_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedScalarFieldContainer[bytes]
    end_of_stream: bool
    seq: int
    typename: str
    token: str
    offloaded: _containers.RepeatedCompositeFieldContainer[ObjectRef]
    def __init__(self, items: _Optional[_Iterable[bytes]] = ..., end_of_stream: _Optional[bool] = ..., seq: _Optional[int] = ..., typename: _Optional[str] = ..., token: _Optional[str] = ..., offloaded: _Optional[_Iterable[_Union[ObjectRef, _Mapping]]] = ...) -> None: ...

class ObjectRef(_message.Message):
    __slots__ = ("index", "store", "key", "size", "sha256")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    STORE_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    index: int
    store: str
    key: str
    size: int
    sha256: str
    def __init__(self, index: _Optional[int] = ..., store: _Optional[str] = ..., key: _Optional[str] = ..., size: _Optional[int] = ..., sha256: _Optional[str] = ...) -> None: ...
