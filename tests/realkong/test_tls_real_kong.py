"""Real Kong's TLS listener (`0.0.0.0:8443 ssl`, no ssl_cert: Kong's generated default certificate), checked with the
same expectations tests/emulator/test_tls.py holds the emulator to."""

from __future__ import annotations

import socket
import ssl
import warnings

import pytest
import requests
from cryptography import x509

KONG_DEFAULT_SUBJECT = "CN=localhost,OU=IT Department,O=Kong,L=San Francisco,ST=California,C=US"


def _client(high=None, low=None) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE  # Kong's default certificate is self-signed
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        if low is not None:
            ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
            ctx.minimum_version = low
        if high is not None:
            ctx.maximum_version = high
    return ctx


def _handshake(real_kong, ctx: ssl.SSLContext) -> ssl.SSLSocket:
    raw = socket.create_connection((real_kong.host, real_kong.proxy_tls_port), timeout=10)
    return ctx.wrap_socket(raw, server_hostname="localhost")


def test_kong_serves_its_default_certificate_with_tls_1_2_and_1_3(real_kong):
    with _handshake(real_kong, _client()) as tls:
        assert tls.version() == "TLSv1.3"
    with _handshake(real_kong, _client(high=ssl.TLSVersion.TLSv1_2)) as tls:
        assert tls.version() == "TLSv1.2"
        cert = x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))
    assert cert.subject.rfc4514_string() == KONG_DEFAULT_SUBJECT and cert.issuer == cert.subject


def test_kong_refuses_tls_1_1(real_kong):
    with pytest.raises(ssl.SSLError):
        _handshake(real_kong, _client(low=ssl.TLSVersion.TLSv1, high=ssl.TLSVersion.TLSv1_1)).close()


def test_kongs_404_over_https(real_kong):
    resp = requests.get(f"https://{real_kong.host}:{real_kong.proxy_tls_port}/nope", verify=False, timeout=10)
    assert resp.status_code == 404
    assert resp.headers["Content-Type"].startswith("application/problem+json")
