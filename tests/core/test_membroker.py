"""The embedded default's in-memory broker wakes its consumer instead of letting it sleep."""

from __future__ import annotations

import threading
import uuid
from typing import Any

from kombu import Connection, Consumer, Exchange, Producer, Queue

# The consumer would look again only after WAIT_S (its fallback poll is longer still): what
# arrives within WOKEN_S was woken.
POLLING_INTERVAL_S = 60.0
WAIT_S = 30.0
WOKEN_S = 10.0


def _connection() -> Connection:
    return Connection(
        "memory://localhost/",
        transport="lookalike.membroker:Transport",
        transport_options={"polling_interval": POLLING_INTERVAL_S},
    )


def test_an_acknowledgement_lets_a_full_consumer_take_the_next_message() -> None:
    # As a worker thread with late acks and a prefetch of one: the second message waits
    # until the first is acknowledged, then is delivered without waiting out the poll.
    queue = Queue(f"q-{uuid.uuid4().hex}", Exchange("membroker-test"), routing_key="k")
    with _connection() as conn:
        channel = conn.channel()
        Producer(channel).publish(
            "first", exchange=queue.exchange, routing_key="k", declare=[queue]
        )
        Producer(channel).publish("second", exchange=queue.exchange, routing_key="k")
        received: list[Any] = []
        consumer = Consumer(channel, [queue], callbacks=[lambda body, msg: received.append(msg)])
        consumer.qos(prefetch_count=1)
        with consumer:
            conn.drain_events(timeout=WAIT_S)
            assert [m.payload for m in received] == ["first"]
            # The window is full: the consumer now sleeps on its broker's wake-up.
            drained = threading.Event()

            def drain() -> None:
                conn.drain_events(timeout=WAIT_S)
                drained.set()

            waiter = threading.Thread(target=drain, daemon=True)
            waiter.start()
            received[0].ack()
            waiter.join(WOKEN_S)
            assert drained.is_set(), "the acknowledgement did not wake the consumer"
        waiter.join()
        assert [m.payload for m in received] == ["first", "second"]


def test_a_published_message_wakes_a_waiting_consumer() -> None:
    queue = Queue(f"q-{uuid.uuid4().hex}", Exchange("membroker-test"), routing_key="k")
    with _connection() as conn:
        channel = conn.channel()
        queue(channel).declare()
        received: list[Any] = []
        with Consumer(channel, [queue], callbacks=[lambda body, msg: received.append(body)]):
            waiter = threading.Thread(
                target=conn.drain_events, kwargs={"timeout": WAIT_S}, daemon=True
            )
            waiter.start()
            Producer(channel).publish("hello", exchange=queue.exchange, routing_key="k")
            waiter.join(WOKEN_S)
            assert received == ["hello"], "the message did not wake the consumer"
        waiter.join()
