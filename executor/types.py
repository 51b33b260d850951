"""The stream types a progdef's code names: ``from executor.types import Text``.

Every typename a port may declare maps to its message class through
:func:`message_class` (the standard ``dagyo.types`` ones, the well-known ones, and a
progdef's own).
"""

from executor.core.types import (
    Bytes,
    Error,
    Float64,
    Int64,
    Json,
    Text,
    TextPair,
    describe,
    frame_class,
    message_class,
)

__all__ = [
    "Bytes",
    "Error",
    "Float64",
    "Int64",
    "Json",
    "Text",
    "TextPair",
    "describe",
    "frame_class",
    "message_class",
]
