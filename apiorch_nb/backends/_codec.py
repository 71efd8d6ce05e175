"""Cached responses as bytes, and cache keys as strings, for the persistent backends.

A stored entry is ``VERSION`` (one byte), the lengths of header and body (4 bytes each,
big-endian), a JSON header ``[status, method, url, content_type, [[name, value], ...]]``
and the raw body. No pickle: a cache file or a shared Redis can be written by anyone who
can reach it, and decoding it must never run code. ``Set-Cookie`` headers are dropped on
the way in, so a session cookie never lands on disk or in Redis.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from collections.abc import Hashable

from multidict import CIMultiDict

from .._http import Response

#: Bumped when the layout changes; an entry of another version reads as a miss.
VERSION = 1
_PREFIX = struct.Struct(">BII")
#: Response headers never persisted (compared lower-case).
_UNPERSISTED = frozenset({"set-cookie", "set-cookie2"})
_DIGEST = re.compile(r"[0-9a-f]{64}").fullmatch


def encode_response(response: Response) -> bytes:
    """`response` as bytes `decode_response` reads back, without its ``Set-Cookie`` headers."""
    headers = [[k, v] for k, v in response.headers.items() if k.lower() not in _UNPERSISTED]
    header = json.dumps(
        [response.status, response.method, response.url, response.content_type, headers],
        separators=(",", ":"),
    ).encode()  # ASCII-escaped, so header values aiohttp surrogate-escaped survive
    body = response.body
    return b"".join((_PREFIX.pack(VERSION, len(header), len(body)), header, body))


def decode_response(data: bytes) -> Response | None:
    """The response `encode_response` stored, or None for anything else.

    An entry of another version, or a truncated or corrupt one, reads as a miss rather
    than an error: the next response overwrites it, so the cache heals itself.
    """
    if len(data) < _PREFIX.size or data[0] != VERSION:
        return None
    _, header_size, body_size = _PREFIX.unpack_from(data)
    end = _PREFIX.size + header_size
    if len(data) != end + body_size:
        return None
    try:
        status, method, url, content_type, headers = json.loads(data[_PREFIX.size : end])
        return Response(status, CIMultiDict(headers), data[end:], url, method, content_type)
    except (ValueError, TypeError):
        return None


def storage_key(key: Hashable) -> str:
    """`key` as a stable 64-character hex string, the same in every process.

    The default key is already a sha256 hex digest and is used as it is. Any other key
    (from a ``cache_key_generator``) is replaced by the sha256 of its ``repr``: ``hash()``
    differs between processes, and a hash never writes a secret the key may hold to disk.
    So a custom key must have a stable ``repr`` (str, int, tuples of them, ...); one that
    shows an object's address only ever misses.
    """
    if isinstance(key, str) and _DIGEST(key):
        return key
    return hashlib.sha256(repr(key).encode()).hexdigest()
