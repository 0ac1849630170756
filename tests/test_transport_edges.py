"""node.transport_edges: the py-libp2p data-path workarounds do what they say.

The Noise reader is checked twice: cut into every awkward shape against real
Noise cipher states (the byte source is a list of pieces: only how the bytes
arrive is chosen here), and end to end between two real hosts on 127.0.0.1.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator

import pytest
import trio
from libp2p.io.exceptions import IncompleteReadError
from libp2p.security.noise.io import NoiseTransportReadWriter
from noise.connection import NoiseConnection  # type: ignore[import-untyped]

from node import transport_edges
from node.host import Host, HostConfig, Stream

LISTEN = ("/ip4/127.0.0.1/tcp/0",)


def test_yamux_reads_its_tuning_variables_once() -> None:
    from libp2p.stream_muxer.yamux import yamux

    lookup = getattr(yamux, "_py_yamux_env")  # noqa: B009 (private, replaced by node.transport_edges)
    assert yamux._yamux_release_on_read() is False  # the edge's default is in force
    hits = lookup.cache_info().hits
    yamux._yamux_release_on_read()
    assert lookup.cache_info().hits == hits + 1


def test_noise_reads_are_ours() -> None:
    assert NoiseTransportReadWriter.read_msg is transport_edges._read_msg


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
