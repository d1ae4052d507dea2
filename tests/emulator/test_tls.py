"""TLS on `proxy_listen ... ssl` through the real emulator process, configured as Kong 3.9 configures nginx.

References: kong/conf_loader/constants.lua (CIPHER_SUITES: `intermediate`, the default, is TLSv1.2 + TLSv1.3),
kong/cmd/utils/prefix_handler.lua (`gen_default_ssl_cert`: `<prefix>/ssl/kong-default.crt` and
`kong-default-ecdsa.crt` when no `ssl_cert` is set), kong/templates/nginx_kong.lua (`X-Forwarded-Proto $scheme`,
`X-Forwarded-Port $server_port`).
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import warnings

import pytest
import requests
from cryptography import x509
from kong_emulator.listeners.tls import local_ca
from kong_emulator.testing import EmulatorProcess, free_port
from proxy_support import Upstream, assert_no_strict_failures, pairs_to_multimap


def kong_yml(up: Upstream) -> str:
    return f"""
_format_version: "3.0"
services:
- name: echo
  url: {up.url}/echo
  routes:
  - {{name: echo, paths: ["/echo"]}}
"""


@pytest.fixture(scope="module")
def up():
    server = Upstream().start()
    yield server
    server.stop()


def tls_gateway(up: Upstream, **conf) -> EmulatorProcess:
    """An emulator with an `ssl http2` listener (listed first, so it is up once the plain one answers)."""
    tls_port = free_port()
    gw = EmulatorProcess(kong_yml(up), conf_extra={"proxy_listen": f"127.0.0.1:{tls_port} ssl http2"})
    gw.port = free_port()
    gw.conf_extra["proxy_listen"] += f", 127.0.0.1:{gw.port}"
    gw.conf_extra.update(conf)
    gw.tls_port = tls_port
    return gw.start()


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    return local_ca(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def gw(up, ca):
    proc = tls_gateway(up, ssl_cert=str(ca.cert), ssl_cert_key=str(ca.key))
    yield proc
    assert_no_strict_failures(proc)
    proc.stop()


def client_context(ca_file=None, *, low=None, high=None, check_hostname=True) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=ca_file)
    ctx.check_hostname = check_hostname
    with warnings.catch_warnings():  # TLSv1/TLSv1_1 are deprecated names: exactly what this client must offer
        warnings.simplefilter("ignore", DeprecationWarning)
        if low is not None:
            ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # the client offers old protocols: the refusal is the server's
            ctx.minimum_version = low
        if high is not None:
            ctx.maximum_version = high
    return ctx


def handshake(port: int, ctx: ssl.SSLContext, server_name: str = "localhost") -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    return ctx.wrap_socket(raw, server_hostname=server_name)


def test_https_request_verified_against_the_generated_ca(gw, ca):
    resp = requests.get(f"https://localhost:{gw.tls_port}/echo", verify=str(ca.ca_cert), timeout=10)
    assert resp.status_code == 200
    assert resp.headers["Via"].startswith("1.1 kong/")
    with handshake(gw.tls_port, client_context(str(ca.ca_cert))) as tls:
        assert tls.selected_alpn_protocol() in (None, "http/1.1")  # `http2` on the listener: HTTP/1.1 only here
        assert tls.version() == "TLSv1.3"


def test_upstream_sees_https_and_the_tls_port(gw, ca):
    conn = http.client.HTTPSConnection("localhost", gw.tls_port, context=client_context(str(ca.ca_cert)), timeout=10)
    try:
        conn.request("GET", "/echo")
        seen = pairs_to_multimap(json.loads(conn.getresponse().read())["headers"])
    finally:
        conn.close()
    assert seen["x-forwarded-proto"] == ["https"]
    assert seen["x-forwarded-port"] == [str(gw.tls_port)]
    # the plain listener of the same emulator still says http
    plain = pairs_to_multimap(requests.get(f"{gw.url}/echo", timeout=10).json()["headers"])
    assert plain["x-forwarded-proto"] == ["http"] and plain["x-forwarded-port"] == [str(gw.port)]


def test_tls_1_2_is_accepted_and_tls_1_1_refused(gw, ca):
    with handshake(gw.tls_port, client_context(str(ca.ca_cert), high=ssl.TLSVersion.TLSv1_2)) as tls:
        assert tls.version() == "TLSv1.2"
        assert tls.cipher()[0] in ("ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384",
                                   "ECDHE-ECDSA-CHACHA20-POLY1305")  # fmt: skip
    old = client_context(str(ca.ca_cert), low=ssl.TLSVersion.TLSv1, high=ssl.TLSVersion.TLSv1_1)
    with pytest.raises(ssl.SSLError) as refused:
        handshake(gw.tls_port, old).close()
    # nginx answers with a protocol_version alert; asyncio's TLS layer may just close after the ClientHello
    assert isinstance(refused.value, ssl.SSLEOFError) or "PROTOCOL_VERSION" in str(refused.value).upper()


def test_http2_is_logged_as_not_emulated(gw):
    assert f"127.0.0.1:{gw.tls_port} has `http2`" in gw.output()
    assert f"listening on https://127.0.0.1:{gw.tls_port}" in gw.output()


def test_kongs_default_certificate_is_generated_when_none_is_configured(up):
    gw = tls_gateway(up)
    try:
        ssl_dir = gw.workdir / "ssl"  # the prefix
        rsa_pem, ecdsa_pem = (
            (ssl_dir / "kong-default.crt").read_bytes(),
            (ssl_dir / "kong-default-ecdsa.crt").read_bytes(),
        )
        assert (ssl_dir / "kong-default.key").stat().st_mode & 0o077 == 0
        cert = x509.load_pem_x509_certificate(rsa_pem)
        assert (
            cert.subject.rfc4514_string() == "CN=localhost,OU=IT Department,O=Kong,L=San Francisco,ST=California,C=US"
        )
        assert cert.issuer == cert.subject and cert.public_key().key_size == 2048
        assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days == 20 * 365
        assert x509.load_pem_x509_certificate(ecdsa_pem).public_key().curve.name == "secp256r1"
        # the listener presents it: trusted as is, it verifies (no subjectAltName, so no hostname check)
        ctx = client_context(str(ssl_dir / "kong-default.crt"), high=ssl.TLSVersion.TLSv1_2, check_hostname=False)
        ctx.set_ciphers("ECDHE-RSA-AES128-GCM-SHA256")
        with handshake(gw.tls_port, ctx) as tls:
            assert tls.getpeercert(binary_form=True) == ssl.PEM_cert_to_DER_cert(rsa_pem.decode())
        assert "using Kong's default certificate" in gw.output()
        assert_no_strict_failures(gw)
    finally:
        gw.stop()


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        ({"ssl_cert": "/nonexistent/cert.pem"}, "in kong.conf: ssl_cert_key must be specified"),
        ({"ssl_cert": "/nonexistent/a.pem", "ssl_cert_key": "/nonexistent/a.key"},
         "in kong.conf: ssl_cert: failed loading certificate from /nonexistent/a.pem"),
        ({"ssl_cipher_suite": "strongest"}, "in kong.conf: Undefined cipher suite strongest"),
    ],
)  # fmt: skip
def test_bad_tls_settings_stop_the_start(up, conf, message):
    tls_port = free_port()
    gw = EmulatorProcess(kong_yml(up), conf_extra={"proxy_listen": f"127.0.0.1:{tls_port} ssl", **conf})
    try:
        gw.start(wait=False)
        assert gw.wait_exit() == 1
        assert message in gw.output() and "Traceback" not in gw.output()
    finally:
        gw.stop()
