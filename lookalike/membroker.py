"""The embedded default's broker: kombu's in-memory transport, woken by a new message instead
of polling for one.

kombu's memory transport looks at its queues, finds nothing, sleeps for its polling interval
and looks again: a search by photo, which waits for the worker thread to pick its task up,
paid that sleep in latency, and a shorter interval costs CPU while the service is idle. Here
a message put on a queue wakes the waiting consumer at once, and so does an acknowledgement
(it frees a place in the consumer's prefetch window); the polling interval is only a
fallback. Measured in docs/performance.md.

Selected by ``celery_config`` (lookalike/task_queues.py) through Celery's ``broker_transport``.
"""

from __future__ import annotations

import threading
from queue import Empty
from time import monotonic
from typing import Any

from kombu.transport import memory

# One for the process, like the memory transport's queues (its state is global).
_arrived = threading.Event()


class Channel(memory.Channel):
    def _put(self, queue: str, message: Any, **kwargs: Any) -> None:
        super()._put(queue, message, **kwargs)
        _arrived.set()

    def _put_fanout(
        self, exchange: str, message: Any, routing_key: Any = None, **kwargs: Any
    ) -> None:
        super()._put_fanout(exchange, message, routing_key, **kwargs)
        _arrived.set()

    def basic_ack(self, delivery_tag: Any, multiple: bool = False) -> None:
        # With late acks and a prefetch of one per worker thread, the consumer takes no new
        # message until a task is acknowledged: wake it then too, or a thread that finished
        # its task waits out the polling interval for the next one (ingest batches: 4.7 ms
        # between tasks on average; 1.8 with this).
        super().basic_ack(delivery_tag, multiple)
        _arrived.set()

    def basic_reject(self, delivery_tag: Any, requeue: bool = False) -> None:
        super().basic_reject(delivery_tag, requeue)
        _arrived.set()


class Transport(memory.Transport):
    Channel = Channel

    def drain_events(self, connection: Any, timeout: float | None = None, **kwargs: Any) -> None:
        """kombu's loop (virtual.Transport.drain_events), waiting on the arrival of a
        message where it sleeps."""
        started = monotonic()
        cycle = self.cycle
        assert cycle is not None  # set by the first channel, before any consumer drains
        interval = self.polling_interval
        if timeout and interval and interval > timeout:
            interval = timeout
        while True:
            # Cleared before looking, so a message put after the look still wakes the wait.
            _arrived.clear()
            try:
                cycle.get(self._deliver, timeout=timeout)
            except Empty:
                if timeout is not None and monotonic() - started >= timeout:
                    raise TimeoutError() from None
                _arrived.wait(interval if interval is not None else timeout)
            else:
                return
