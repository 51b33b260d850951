from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class Frame(_message.Message):
    __slots__ = ("items", "end_of_stream", "seq", "typename", "token")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    END_OF_STREAM_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TYPENAME_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedScalarFieldContainer[bytes]
    end_of_stream: bool
    seq: int
    typename: str
    token: str
    def __init__(self, items: _Optional[_Iterable[bytes]] = ..., end_of_stream: _Optional[bool] = ..., seq: _Optional[int] = ..., typename: _Optional[str] = ..., token: _Optional[str] = ...) -> None: ...
