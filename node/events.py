"""The daemon's event bus: services publish, RPC subscribers receive.

``publish`` never blocks and never awaits: it hands the event to every
interested subscriber's ``deliver`` callback, which must not block either
(the RPC server's callback puts a notification in the connection's bounded
queue, or disconnects a client whose queue is full). So a slow subscriber can
never slow the daemon down.

Invariants: only events named in ``node.rpc_api.EVENTS`` (the documented
catalogue) may be published or subscribed to; ``publish`` is called from the
trio thread only (worker threads report through trio, never directly).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from node.rpc_api import EVENT_NAMES

Deliver = Callable[[str, Mapping[str, object]], None]


class UnknownEvent(Exception):
    """An event name that is not in the catalogue (a bug when publishing)."""


@dataclass(eq=False, slots=True)
class Subscription:
    """One subscriber's interest; ``close`` ends it (idempotent)."""

    events: frozenset[str]
    deliver: Deliver
    _bus: EventBus | None
    internal: bool = False  # a service of the daemon, not an RPC client

    def close(self) -> None:
        if self._bus is not None:
            self._bus._subscriptions.discard(self)
            self._bus = None


@dataclass(slots=True)
class EventBus:
    _subscriptions: set[Subscription] = field(default_factory=set)
    _published: Counter[str] = field(default_factory=Counter)

    def subscribe(
        self, events: frozenset[str], deliver: Deliver, *, internal: bool = False
    ) -> Subscription:
        """Deliver the named events to ``deliver`` until the subscription is closed.

        ``internal``: the subscriber is a service of the daemon (gossip, say);
        ``statistics()`` counts those apart from RPC clients' subscriptions.
        """
        unknown = events - EVENT_NAMES
        if unknown:
            raise UnknownEvent(f"unknown event {sorted(unknown)[0]!r}")
        subscription = Subscription(events, deliver, self, internal)
        self._subscriptions.add(subscription)
        return subscription

    def publish(self, event: str, data: Mapping[str, object]) -> None:
        """Hand ``data`` to every subscriber of ``event``; never blocks."""
        if event not in EVENT_NAMES:
            raise UnknownEvent(f"unknown event {event!r}: add it to node.rpc_api.EVENTS")
        self._published[event] += 1
        # A deliver callback may close subscriptions (a disconnect): iterate over a copy.
        for subscription in list(self._subscriptions):
            if event in subscription.events and subscription._bus is not None:
                subscription.deliver(event, data)

    def statistics(self) -> dict[str, object]:
        internal = sum(subscription.internal for subscription in self._subscriptions)
        return {
            "subscriptions": len(self._subscriptions) - internal,
            "internal_subscriptions": internal,
            "published": dict(self._published),
        }
