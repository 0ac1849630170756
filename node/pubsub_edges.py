"""py-libp2p's Pubsub as remixnet uses it: one validator for every message, and
the library's edges around pubsub worked around (each marked ``EDGE:``, see
DESIGN.md). ``node.gossip`` builds it; nothing else here knows about records.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar

from libp2p.abc import INetStream
from libp2p.peer.id import ID
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub, TopicValidator
from libp2p.tools.anyio_service.exceptions import LifecycleError

# The topics named by the hello packet this task sends (see ValidatingPubsub).
_hello_topics: ContextVar[frozenset[str] | None] = ContextVar("hello_topics", default=None)


class ValidatingPubsub(Pubsub):
    """Pubsub that validates every message with one validator and delivers to one callback.

    EDGE: py-libp2p runs validators only for topics they were registered for
    (a message on an unvalidated topic would be forwarded unchecked), and its
    subscription queues hold 32 messages and drop the rest. This subclass
    applies ``validator`` to every message and hands validated messages on
    subscribed topics to ``deliver``, which queues them in a channel of our size.
    """

    validator: Callable[[ID, rpc_pb2.Message], bool]
    deliver: Callable[[rpc_pb2.Message], None]
    stopping = False  # set as the service stops, before its task nursery can close

    # EDGE: pubsub's stream readers run in the host's nursery, which outlives
    # this service (the host's tasks are shielded until it closes: node.host).
    # For one scheduling pass as the service stops, its task nursery is closed
    # while ``manager.is_running`` still holds; a message read then made
    # ``run_task`` raise RuntimeError ("Nursery is closed to new arrivals") out
    # of the host, and the daemon exited 1 on SIGTERM (tests/test_crash.py,
    # once). ``run``'s own ``finally`` comes before the nursery can close, so
    # from then on a reader that fails so just ends.

    async def run(self) -> None:
        try:
            await super().run()
        finally:
            self.stopping = True

    async def stream_handler(self, stream: INetStream) -> None:
        try:
            await super().stream_handler(stream)
        except (RuntimeError, LifecycleError):
            if not self.stopping:
                raise

    def get_msg_validators(self, msg: rpc_pb2.Message) -> tuple[TopicValidator, ...]:
        return (TopicValidator(self.validator, False),)

    def notify_subscriptions(self, publish_message: rpc_pb2.Message) -> None:
        if any(topic in self.topic_ids for topic in publish_message.topicIDs):
            self.deliver(publish_message)

    # EDGE: ``_handle_new_peer`` builds the hello (our topics) before it awaits
    # the hello's write, and registers the peer only after that; ``subscribe``
    # and ``unsubscribe`` tell the registered peers only. A topic joined or left
    # in between was told to nobody, so that peer never learnt of it (seen in CI:
    # a collab followed right after ``peers.connect``). The hello's topics are
    # kept per task, and once the peer is registered it is sent what changed.

    def get_hello_packet(self) -> rpc_pb2.RPC:
        packet = super().get_hello_packet()
        _hello_topics.set(frozenset(self.topic_ids))
        return packet

    async def _handle_new_peer(self, peer_id: ID) -> None:
        _hello_topics.set(None)
        await super()._handle_new_peer(peer_id)
        told = _hello_topics.get()
        queue = self.peer_queues.get(peer_id)
        if told is None or queue is None:
            return  # the peer was registered already, or not at all
        now = frozenset(self.topic_ids)
        for topic in sorted(now ^ told):  # what subscribe / unsubscribe would have sent it
            packet, change = self._build_announce_rpc(topic, subscribe=topic in now)
            self._enqueue_or_retry_announce(peer_id, queue, packet, change)
