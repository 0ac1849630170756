"""node.transport_edges: the py-libp2p data-path workarounds do what they say.

The Noise reader is checked twice: cut into every awkward shape against real
Noise cipher states (the byte source is a list of pieces: only how the bytes
arrive is chosen here), and end to end between two real hosts on 127.0.0.1.
"""

from __future__ import annotations

import os
import random
from collections.abc import Awaitable, Callable, Iterator
from typing import cast

import pytest
import trio
from libp2p.io.exceptions import ConnectionClosedError, IncompleteReadError
from libp2p.io.utils import read_exactly as library_read_exactly
from libp2p.security.noise.io import NoiseTransportReadWriter
from libp2p.security.secure_session import SecureSession
from libp2p.stream_muxer.yamux import yamux
from noise.connection import NoiseConnection  # type: ignore[import-untyped]

from node import transport_edges
from node.host import Host, HostConfig, Stream

LISTEN = ("/ip4/127.0.0.1/tcp/0",)


def test_yamux_reads_its_tuning_variables_once() -> None:
    lookup = getattr(yamux, "_py_yamux_env")  # noqa: B009 (private, replaced by node.transport_edges)
    assert yamux._yamux_release_on_read() is False  # the edge's default is in force
    hits = lookup.cache_info().hits
    yamux._yamux_release_on_read()
    assert lookup.cache_info().hits == hits + 1


def test_the_data_path_is_ours() -> None:
    assert NoiseTransportReadWriter.read_msg is transport_edges._read_msg
    assert SecureSession.read is transport_edges._session_read
    assert yamux.read_exactly is transport_edges._read_exactly  # type: ignore[attr-defined]
    assert yamux.Yamux._read_data_body is transport_edges._read_data_body


def _noise_pair() -> tuple[NoiseConnection, NoiseConnection]:
    """Two Noise states after a real NN handshake (ChaCha20-Poly1305, as libp2p uses)."""
    name = b"Noise_NN_25519_ChaChaPoly_SHA256"
    initiator, responder = NoiseConnection.from_name(name), NoiseConnection.from_name(name)
    initiator.set_as_initiator()
    responder.set_as_responder()
    initiator.start_handshake()
    responder.start_handshake()
    responder.read_message(initiator.write_message())
    initiator.read_message(responder.write_message())
    assert initiator.handshake_finished
    assert responder.handshake_finished
    return initiator, responder


class _Pieces:
    """A raw connection that hands over fixed bytes in the pieces given (each at most ``n``)."""

    def __init__(self, data: bytes, cuts: Iterator[int]) -> None:
        self.data = data
        self.cuts = cuts
        self.reads = 0

    async def read(self, n: int | None = None) -> bytes:
        self.reads += 1
        size = min(next(self.cuts), n if n is not None else len(self.data))
        piece, self.data = self.data[:size], self.data[size:]
        return piece

    async def write(self, data: bytes) -> None:
        raise AssertionError("the reader never writes")

    async def close(self) -> None:
        pass


def _wire(sender: NoiseConnection, messages: list[bytes]) -> bytes:
    out = bytearray()
    for message in messages:
        encrypted = sender.encrypt(message)
        out += len(encrypted).to_bytes(2, "big") + encrypted
    return bytes(out)


@pytest.mark.parametrize("cut", [1, 2, 3, 17, 65_535, 65_537, 300_000])
async def test_noise_messages_survive_any_cut_of_the_byte_stream(cut: int) -> None:
    rng = random.Random(cut)
    randoms = [rng.randbytes(rng.randrange(65_520)) for _ in range(20)]
    messages = [b"", b"x", os.urandom(65_519), *randoms]
    sender, receiver = _noise_pair()
    sizes = iter(lambda: rng.choice((cut, max(1, cut // 2), cut + 1)), None)
    source = _Pieces(_wire(sender, messages), sizes)
    reader = NoiseTransportReadWriter(source, receiver)  # type: ignore[arg-type]
    for expected in messages:
        assert await reader.read_msg() == expected
    assert source.data == b""  # nothing read ahead was lost or left over


async def test_one_receive_serves_many_messages() -> None:
    sender, receiver = _noise_pair()
    messages = [os.urandom(1000) for _ in range(100)]
    source = _Pieces(_wire(sender, messages), iter(lambda: 1 << 30, None))
    reader = NoiseTransportReadWriter(source, receiver)  # type: ignore[arg-type]
    assert [await reader.read_msg() for _ in messages] == messages
    assert source.reads <= 2  # ~100 KiB arrive in one receive of RECEIVE_SIZE


@pytest.mark.parametrize(("received", "clean"), [(0, True), (1, False), (40, False)])
async def test_a_closed_connection_ends_the_reader_as_the_library_did(
    received: int, clean: bool
) -> None:
    sender, receiver = _noise_pair()
    whole = _wire(sender, [os.urandom(100)])
    source = _Pieces(whole[:received], iter(lambda: 7, None))
    reader = NoiseTransportReadWriter(source, receiver)  # type: ignore[arg-type]
    with pytest.raises(IncompleteReadError) as caught:
        await reader.read_msg()
    assert caught.value.received_bytes == received
    assert caught.value.is_clean_close is clean  # Yamux logs a clean close quietly


async def test_streams_between_real_hosts_carry_every_byte() -> None:
    """Several streams at once, writes of every size: what arrives is what was sent."""
    protocol = "/remixnet-test/echo-sizes/1.0.0"
    rng = random.Random(7)
    payloads = [
        b"".join(rng.randbytes(rng.choice((1, 13, 65_507, 65_508, 200_000))) for _ in range(12))
        for _ in range(3)
    ]
    received: dict[int, bytes] = {}

    async def handler(stream: Stream, peer_id: str) -> None:
        index = (await stream.read(1))[0]
        data = bytearray()
        while len(data) < len(payloads[index]):
            piece = await stream.read(1 << 20)
            if not piece:
                break
            data += piece
        received[index] = bytes(data)
        await stream.write(b"k")
        await stream.close()

    server = Host(os.urandom(32), HostConfig(LISTEN))
    client = Host(os.urandom(32), HostConfig(LISTEN))
    server.set_stream_handler(protocol, handler)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(server.run)
            await nursery.start(client.run)
            peer_id = await client.connect(server.listen_addrs()[0])

            async def send(index: int) -> None:
                stream = await client.open_stream(peer_id, protocol)
                await stream.write(bytes([index]))
                payload, offset = payloads[index], 0
                while offset < len(payload):
                    step = rng.choice((1, 100, 65_507, 70_000, 300_000))
                    await stream.write(payload[offset : offset + step])
                    offset += step
                assert await stream.read(1) == b"k"
                await stream.close()

            async with trio.open_nursery() as senders:
                for index in range(len(payloads)):
                    senders.start_soon(send, index)
            nursery.cancel_scope.cancel()
    assert received == dict(enumerate(payloads))


class _Messages:
    """Noise's side of a SecureSession: decrypted messages, one per read_msg."""

    def __init__(self, *messages: bytes) -> None:
        self.messages = list(messages)

    async def read_msg(self) -> bytes:
        return self.messages.pop(0) if self.messages else b""


def _session(*messages: bytes) -> SecureSession:
    session = object.__new__(SecureSession)  # only its reading part is under test
    session.conn = _Messages(*messages)  # type: ignore[assignment]
    return session


async def test_session_reads_give_what_the_library_gave() -> None:
    frame = bytes(range(12)) + os.urandom(65_495)  # a Yamux header and body in one message
    session = _session(frame, b"abc", b"defgh", b"ij")
    assert await session.read(12) == frame[:12]
    assert await session.read(65_495) == frame[12:]
    assert await session.read(2) == b"ab"
    assert await session.read(4) == b"cdef"  # the rest of one message and part of the next
    assert await session.read() == b"gh"  # n=None: what is buffered, else one message
    assert await session.read() == b"ij"
    with pytest.raises(ConnectionClosedError):
        await session.read(1)


@pytest.mark.parametrize("seed", range(40))
async def test_session_reads_match_the_library_read_for_read(seed: int) -> None:
    rng = random.Random(seed)
    messages = [rng.randbytes(rng.choice((0, 1, 5, 12, 100, 65_507))) for _ in range(8)]
    messages = [message for message in messages if message]  # b"" means the end of the stream
    sizes = [rng.choice((None, 1, 2, 12, 50, 65_495, 65_507, 70_000)) for _ in range(14)]

    async def outcomes(read: Callable[..., Awaitable[bytes]]) -> list[object]:
        session = _session(*messages)
        session._reset_internal_buffer()  # the library's buffer, as its constructor makes it
        seen: list[object] = []
        for size in sizes:
            try:
                seen.append(await read(session, size))
            except ConnectionClosedError as error:
                seen.append(str(error))
        return seen

    assert await outcomes(transport_edges._session_read) == await outcomes(
        transport_edges._library_session_read
    )


async def test_session_read_at_the_end_of_the_stream_returns_what_there_was() -> None:
    session = _session(b"abc")
    assert await session.read(10) == b"abc"  # short, as the library returns it
    with pytest.raises(ConnectionClosedError):
        await session.read()


async def test_read_exactly_returns_a_whole_read_as_it_is() -> None:
    whole = os.urandom(1000)
    assert await transport_edges._read_exactly(_session(whole), 1000) is whole  # no copy


@pytest.mark.parametrize(
    ("messages", "n", "short_reads"),
    [
        ((b"abcd",), 4, False),
        ((b"ab", b"cd"), 4, True),  # short reads: the loop
        ((b"ab", b"cdef"), 3, True),
        ((b"xy",), 4, False),  # the stream ends first
        ((b"xy",), 4, True),
        ((), 4, False),
    ],
)
async def test_read_exactly_ends_as_the_library_did(
    messages: tuple[bytes, ...], n: int, short_reads: bool
) -> None:
    async def outcome(read_exactly: Callable[..., Awaitable[bytes]]) -> object:
        session = _session(*messages)
        if short_reads:
            session.read = _one_message_per_read(session)  # type: ignore[method-assign, assignment]
        try:
            return await read_exactly(session, n)
        except Exception as error:
            return (type(error), str(error))

    assert await outcome(transport_edges._read_exactly) == await outcome(library_read_exactly)


def _one_message_per_read(session: SecureSession) -> Callable[[int | None], Awaitable[bytes]]:
    """A reader that returns short reads, as a raw socket may."""
    messages = cast(_Messages, session.conn)

    async def read(n: int | None = None) -> bytes:
        return await messages.read_msg()

    return read


async def test_a_frame_body_is_read_whole_whether_it_is_buffered_or_not() -> None:
    frame = bytes(range(12)) + os.urandom(60_000)
    body_after = os.urandom(70_000)  # spans two messages: read under the library's timeout
    session = _session(frame, body_after[:65_000], body_after[65_000:])
    muxer = object.__new__(yamux.Yamux)  # only its reading of frame bodies is under test
    muxer.secured_conn = session
    assert await session.read(12) == frame[:12]
    assert await muxer._read_data_body(60_000) == frame[12:]  # buffered with its header
    assert await muxer._read_data_body(70_000) == body_after
