"""A small reader for the protobuf wire format, enough to pull logins out of
Antigravity's local state (UPSTREAM.md §3.2a). The schemas are not public, so
messages are read by field number; nothing here encodes.

A message is a run of (key, value) pairs; the key is a varint holding
``field_number << 3 | wire_type``. Wire types: 0 varint, 1 eight bytes,
2 a varint length then that many bytes (strings, bytes, sub-messages),
5 four bytes. Groups (3, 4) were never used by these writers and are refused.
"""

from __future__ import annotations

from dataclasses import dataclass

VARINT = 0
FIXED64 = 1
LEN = 2
FIXED32 = 5

_MAX_VARINT_BYTES = 10


class WireError(ValueError):
    """The bytes are not a well-formed protobuf message."""


@dataclass(frozen=True, slots=True)
class Field:
    number: int
    wire: int
    value: int | bytes


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = 0
    for i in range(_MAX_VARINT_BYTES):
        if pos >= len(buf):
            raise WireError("the message ends inside a varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << (7 * i)
        if byte < 0x80:
            return value, pos
    raise WireError("a varint longer than ten bytes")


def parse(buf: bytes) -> list[Field]:
    """Every top-level field of ``buf`` in order; raises WireError on bad input."""
    fields: list[Field] = []
    pos = 0
    end = len(buf)
    while pos < end:
        key, pos = _read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise WireError("field number 0")
        value: int | bytes
        if wire == VARINT:
            value, pos = _read_varint(buf, pos)
        elif wire in (FIXED64, FIXED32):
            size = 8 if wire == FIXED64 else 4
            if pos + size > end:
                raise WireError("the message ends inside a fixed-size field")
            value = int.from_bytes(buf[pos : pos + size], "little")
            pos += size
        elif wire == LEN:
            length, pos = _read_varint(buf, pos)
            if pos + length > end:
                raise WireError("a length-delimited field runs past the end")
            value = buf[pos : pos + length]
            pos += length
        else:
            raise WireError(f"wire type {wire} is not supported")
        fields.append(Field(number, wire, value))
    return fields


def try_parse(buf: bytes) -> list[Field] | None:
    try:
        return parse(buf)
    except WireError:
        return None


def first_bytes(fields: list[Field], number: int) -> bytes | None:
    for f in fields:
        if f.number == number and isinstance(f.value, bytes):
            return f.value
    return None


def all_bytes(fields: list[Field], number: int) -> list[bytes]:
    return [f.value for f in fields if f.number == number and isinstance(f.value, bytes)]


def first_int(fields: list[Field], number: int) -> int | None:
    for f in fields:
        if f.number == number and f.wire == VARINT and isinstance(f.value, int):
            return f.value
    return None


def text(value: bytes | None) -> str | None:
    """``value`` as UTF-8 text, or None when it is not text."""
    if value is None:
        return None
    try:
        s = value.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return s if s.isprintable() else None
