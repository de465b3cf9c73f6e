"""farm's kombu Redis transport: one publishing client per pool, the same messages."""

from __future__ import annotations

import json

import redis

from farm.settings import Settings
from farm.worker.app import RUN_JOB, make_celery
from farm.worker.transport import TRANSPORT, Channel


def test_publishes_reuse_one_client_and_land_in_the_queue(redis_url: str) -> None:
    app = make_celery(Settings(broker_url=redis_url))
    assert app.conf.broker_transport == TRANSPORT
    queue = "farm.transport-test"
    with app.connection_for_write() as conn:
        channel = conn.default_channel
        assert isinstance(channel, Channel)
        first = channel._create_client()
        assert channel._create_client() is first  # not a new redis.Redis per publish
        assert channel._create_client(asynchronous=True) is not first  # BRPOP keeps its own
        for n in range(3):
            app.send_task(RUN_JOB, args=(n, 1), queue=queue, connection=conn)
        assert channel._create_client() is first
    raw = redis.Redis.from_url(redis_url)
    try:
        messages = [json.loads(m) for m in raw.lrange(queue, 0, -1)]
        assert sorted(m["headers"]["argsrepr"] for m in messages) == ["(0, 1)", "(1, 1)", "(2, 1)"]
    finally:
        raw.delete(queue)
        raw.close()


def test_a_new_pool_gets_a_new_client(redis_url: str) -> None:
    app = make_celery(Settings(broker_url=redis_url))
    with app.connection_for_write() as conn:
        channel = conn.default_channel
        first = channel._create_client()
        channel._disconnect_pools()  # what kombu does when the connection is lost
        second = channel._create_client()
        assert second is not first and second.connection_pool is channel.pool
        assert second.ping()


def test_other_brokers_keep_their_own_transport() -> None:
    app = make_celery(Settings(broker_url="memory://"))
    assert app.conf.broker_transport != TRANSPORT
