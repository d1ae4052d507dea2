"""REDIS_URL selects the topology (standalone, Sentinel, Cluster); the Cluster itself is exercised for real in
tests/redis_cluster/test_auth_cluster.py."""

import pytest
import redis
from auth_support import assert_problem
from storyverse_auth import create_app
from storyverse_auth.extensions import redis_store
from storyverse_auth.redis_topology import RedisTarget, client_for, parse


def test_sentinel_urls_name_every_sentinel_the_master_and_the_db():
    target = parse("redis+sentinel://:s%40cret@10.0.0.1:26379,10.0.0.2:26380,[::1]/mymaster/2")
    assert target == RedisTarget(
        topology="sentinel",
        nodes=(("10.0.0.1", 26379), ("10.0.0.2", 26380), ("::1", 6379)),
        password="s@cret",
        db=2,
        service="mymaster",
    )


def test_cluster_urls_are_seed_lists_with_tls_and_credentials():
    target = parse("rediss+cluster://auth:pw@a.cache.amazonaws.com:6379,b.cache.amazonaws.com:6379")
    assert target.topology == "cluster" and target.ssl and target.username == "auth" and target.password == "pw"
    assert target.nodes == (("a.cache.amazonaws.com", 6379), ("b.cache.amazonaws.com", 6379))


@pytest.mark.parametrize(
    "url",
    ["http://x:1", "redis+magic://x:1", "redis+sentinel://x:26379", "redis+cluster://x:1/3", "redis+cluster://"],
)
def test_unsupported_urls_fail_at_start_up(url):
    with pytest.raises(ValueError):
        parse(url)


def test_plain_urls_keep_redis_py_grammar_and_cluster_urls_build_a_cluster_client():
    standalone = client_for("redis://127.0.0.1:6379/9?health_check_interval=5")
    assert isinstance(standalone, redis.Redis) and standalone.connection_pool.connection_kwargs["db"] == 9
    sentinel = client_for("redis+sentinel://127.0.0.1:26379/mymaster/1")
    assert isinstance(sentinel, redis.Redis) and sentinel.connection_pool.service_name == "mymaster"


def test_an_unreachable_cluster_is_a_503_problem_not_a_crash(migrated_db):
    # A cluster client reads the slot map when built: the app builds it on first use, so it starts while Redis is
    # down, and the failure becomes a RedisError the error handlers answer with 503.
    app = create_app({"TESTING": True, "REDIS_URL": "redis+cluster://127.0.0.1:1", "TRUST_PROXY_HOPS": 0})
    response = app.test_client().get("/readyz")
    assert_problem(response, 503, "unavailable")
    with app.app_context():
        with pytest.raises(redis.ConnectionError):
            redis_store.client  # noqa: B018
