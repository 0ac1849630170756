"""Workarounds for py-libp2p 0.8.1's data path (Noise and Yamux), applied on import.

``node.host`` imports this module before it makes a host, so every
connection of the node gets them. Each one is an ``EDGE:`` (see DESIGN.md):
it changes how fast py-libp2p moves bytes, never what it puts on the wire,
and ``tests/test_transport_edges.py`` checks each against the library.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from libp2p.io.abc import Reader
from libp2p.io.exceptions import ConnectionClosedError, IncompleteReadError
from libp2p.io.utils import DEFAULT_RETRY_READ_COUNT, read_exactly
from libp2p.security.noise.io import NoiseTransportReadWriter
from libp2p.security.secure_session import SecureSession
from libp2p.stream_muxer.yamux import yamux as _yamux

# EDGE: py-libp2p's Yamux answers every read with a WINDOW_UPDATE frame (one
# more Noise message and send() per read) unless PY_YAMUX_RELEASE_ON_READ is
# off, which batches updates to half the window as go-yamux does; measured
# here, bulk transfers run ~1.5x faster with it off. The variable is read at
# each use, so setting it before the first stream is enough; a value the
# user set wins.
os.environ.setdefault("PY_YAMUX_RELEASE_ON_READ", "0")

# EDGE: the same Yamux looks its PY_YAMUX_* variables up in os.environ on
# every read and window update (measured: ~5 % of a fetcher's CPU). Nothing
# changes them while a node runs, so each is read once (after the default
# above is in place).
for _name in ("_py_yamux_env", "_py_yamux_env_set"):
    if hasattr(_yamux, _name):  # a later py-libp2p may drop them; then there is nothing to do
        setattr(_yamux, _name, functools.cache(getattr(_yamux, _name)))

# EDGE: py-libp2p's Noise reads each transport message with two calls of
# read_exactly (its 2-byte length, then its body), each of them one or more
# socket reads behind a trio.Lock, and copies the body three times on the way:
# two to three receive calls per 64 KiB message, the largest share of a
# fetcher's Python time after decryption. Here a connection's Noise reader
# receives up to RECEIVE_SIZE bytes at once into a buffer of its own and cuts
# the messages out of it. The handshake keeps the library's exact reads, so
# no byte that belongs to the transport phase can be read by a reader that
# does not keep it; after the handshake this reader is the connection's only
# one (Yamux's single receiving task reads through it).
RECEIVE_SIZE = 256 * 1024
_LENGTH_SIZE = 2  # Noise's big-endian message length prefix
_library_read_msg = NoiseTransportReadWriter.read_msg


async def _read_msg(self: Any, prefix_encoded: bool = False) -> bytes:
    if prefix_encoded:  # only handshake messages carry the prefix; keep the library's path
        return await _library_read_msg(self, prefix_encoded)
    buffer: bytearray | None = self.__dict__.get("_remixnet_received")
    if buffer is None:
        buffer = self._remixnet_received = bytearray()
    connection = self.read_writer.read_write_closer
    while True:
        available = len(buffer)
        if available >= _LENGTH_SIZE:
            end = _LENGTH_SIZE + int.from_bytes(buffer[:_LENGTH_SIZE], "big")
            if available >= end:
                with memoryview(buffer) as view:
                    message = bytes(view[_LENGTH_SIZE:end])
                del buffer[:end]  # cheap: a bytearray drops its front by moving a pointer
                return bytes(self.decrypt(message))
            wanted = end - available
        else:
            wanted = _LENGTH_SIZE - available
        data = await connection.read(max(RECEIVE_SIZE, wanted))
        if not data:
            # As read_exactly reports it: Yamux tells a clean close (nothing
            # of a next message received) from a connection cut mid-message.
            raise IncompleteReadError(
                f"Connection closed during read operation: {available} bytes of a Noise "
                "message received",
                expected_bytes=available + wanted,
                received_bytes=available,
            )
        buffer += data


NoiseTransportReadWriter.read_msg = _read_msg  # type: ignore[method-assign]

# EDGE: above the Noise reader, py-libp2p's SecureSession keeps what a read
# did not take in a BytesIO (a copy in, a copy out), and read_exactly, which
# Yamux calls for each frame's header and body, copies what it reads twice
# more (into a bytearray, then into bytes): five copies of every byte
# received. Here the session keeps the rest of a message as it is and hands
# out slices, and read_exactly returns a read that brought exactly what was
# asked as it is; both behave as the library's otherwise (the same results,
# errors and end of stream).
_PENDING = "_remixnet_pending"
_NOTHING: tuple[bytes, int] = (b"", 0)


_library_session_read = SecureSession.read


async def _session_read(self: SecureSession, n: int | None = None) -> bytes:
    if n == 0:
        return b""
    state = self.__dict__  # the rest of the last message: (its bytes, where the rest starts)
    pending: bytes
    start: int
    pending, start = state.get(_PENDING, _NOTHING)
    available = len(pending) - start
    if available:
        if n is not None and n < available:
            state[_PENDING] = (pending, start + n)
            return pending[start : start + n]
        state[_PENDING] = _NOTHING
        rest = pending[start:] if start else pending
        if n is None or n == available:
            return rest
        result = bytearray(rest)
    else:
        message: bytes = await self.conn.read_msg()
        if message == b"":
            raise ConnectionClosedError("Connection closed")
        if n is None or n == len(message):
            return message
        if n < len(message):
            state[_PENDING] = (message, n)
            return message[:n]
        result = bytearray(message)
    while len(result) < n:
        message = await self.conn.read_msg()
        if message == b"":
            return bytes(result)
        needed = n - len(result)
        if len(message) > needed:
            state[_PENDING] = (message, needed)
            with memoryview(message) as view:
                result += view[:needed]
        else:
            result += message
    return bytes(result)


SecureSession.read = _session_read  # type: ignore[method-assign]


async def _read_exactly(
    reader: Reader, n: int, retry_count: int = DEFAULT_RETRY_READ_COUNT
) -> bytes:
    data = await reader.read(n)
    if len(data) == n and type(data) is bytes:
        return data
    # Short (or not bytes): the library's loop, with what was read put back in front.
    return await read_exactly(_Prepended(data, reader), n, retry_count)


class _Prepended(Reader):
    """A reader that first gives back bytes already read from ``reader``, then reads on."""

    def __init__(self, data: bytes, reader: Reader) -> None:
        self.data = data
        self.reader = reader

    async def read(self, n: int | None = None) -> bytes:
        if self.data:
            data, self.data = self.data, b""
            return data
        return bytes(await self.reader.read(n))


_yamux.read_exactly = _read_exactly  # type: ignore[attr-defined]

# EDGE: Yamux reads each DATA frame's body inside a trio.fail_after (a cancel
# scope and a deadline registered and removed: ~8 % of a fetcher's Python time
# in the profile). When the body is already in the session's hands, as it is
# for a frame that came in one Noise message with its header, nothing can
# wait, so there is nothing to time out: the body is taken without the scope.
_library_read_data_body = _yamux.Yamux._read_data_body


async def _read_data_body(self: _yamux.Yamux, length: int) -> bytes:
    session = self.secured_conn
    if type(session) is SecureSession:
        pending, start = session.__dict__.get(_PENDING, _NOTHING)
        if len(pending) - start >= length:
            return await _session_read(session, length)  # returns without waiting
    return await _library_read_data_body(self, length)


_yamux.Yamux._read_data_body = _read_data_body  # type: ignore[method-assign]
