"""sv-request-id: schema, core and handler (FakeKong). The emulator end-to-end test lives in tests/e2e."""

from storyverse_plugins.request_id.core import choose_request_id
from storyverse_plugins.request_id.handler import Plugin
from storyverse_plugins.request_id.schema import Config, parse_config


def test_parse_config_takes_defaults_for_kong_nulls():
    assert parse_config({"header_name": None, "trust_client": None, "echo_downstream": None}) == Config()


def test_client_id_is_ignored_unless_trusted():
    assert choose_request_id("client-id-1234", trust_client=False, mint=lambda: "minted") == "minted"
    assert choose_request_id("client-id-1234", trust_client=True, mint=lambda: "minted") == "client-id-1234"


def test_malformed_client_id_is_replaced_even_when_trusted():
    for bad in ("short", "has space in it", "x" * 200, "evil\r\nheader: 1"):
        assert choose_request_id(bad, trust_client=True, mint=lambda: "minted") == "minted"


def test_handler_sets_upstream_response_and_shared(fake_kong):
    fk = fake_kong({"kong.request.get_header": None})
    Plugin({"header_name": "X-Request-Id", "trust_client": False, "echo_downstream": True}).access(fk.kong)
    ((name, rid),) = fk.called("kong.service.request.set_header")
    assert name == "X-Request-Id" and len(rid) == 32
    assert fk.called("kong.response.set_header") == [("X-Request-Id", rid)]
    assert fk.shared["sv_request_id"] == rid
    assert len(fk.calls) == 4
