"""kombu's Redis transport, with one publishing client per channel instead of one per call.

kombu's Redis channel builds a new ``redis.Redis`` around its connection pool for every
message it publishes: a task sent by the coordinator, and each of the three or four
Flower events a worker sends per task. Building one copies redis-py's table of response
callbacks (a few hundred entries); in a worker running no-op jobs that was 6 % of its
CPU. A ``redis.Redis`` holds no connection of its own (each command takes one from the
pool), so one per pool serves every thread. Messages, queues and events are unchanged:
Flower and any stock kombu client read them as before.

Celery is told to use it by ``broker_transport`` (farm/worker/app.py), for ``redis://``
and ``rediss://`` brokers only.
"""

from __future__ import annotations

import threading
from typing import Any

from kombu.transport import redis as kombu_redis

TRANSPORT = "farm.worker.transport:Transport"


class Channel(kombu_redis.Channel):
    """A Redis channel that reuses its synchronous client while its pool lives."""

    _publisher: Any = None
    _publisher_lock = threading.Lock()

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:
            return super()._create_client(asynchronous=True)  # type: ignore[misc]
        pool = self.pool  # a new pool after a reconnect: the cached client goes with it
        client = self._publisher
        if client is None or client.connection_pool is not pool:
            with self._publisher_lock:
                client = self._publisher
                if client is None or client.connection_pool is not pool:
                    client = super()._create_client(asynchronous=False)  # type: ignore[misc]
                    self._publisher = client
        return client


class Transport(kombu_redis.Transport):
    """kombu's Redis transport with :class:`Channel`."""

    Channel = Channel
