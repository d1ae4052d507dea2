"""storyverse_contracts.counters: reading one sv-quota counter hash (pure; Redis-backed reads are tested by their
callers: tests/auth_service/test_auth_page_usage.py, tests/rate_limiting_service)."""

from __future__ import annotations

from storyverse_contracts.counters import Counter, as_int, counter_from_hash


def test_lapsed_reservations_count_as_used_and_held_ones_as_in_flight():
    fields = {"used": "2", "grant": "3", "occ": "1", "r:a": "999", "r:b": "1000", "r:c": "1001"}
    assert counter_from_hash(fields, now_ms=1000) == Counter(used=4, grant=3, in_flight=1, occasion=1)


def test_bytes_names_as_a_client_without_decode_responses_returns_them():
    fields = {b"used": b"1", b"r:x": b"5"}
    assert counter_from_hash(fields, now_ms=10) == Counter(used=2)


def test_an_empty_or_malformed_hash_reads_as_zero():
    assert counter_from_hash({}, now_ms=0) == Counter()
    assert counter_from_hash({"used": "x", "grant": None}, now_ms=0) == Counter()
    assert as_int("7") == 7 and as_int("nope") == 0 and as_int(None) == 0
