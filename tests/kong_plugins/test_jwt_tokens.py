"""sv-jwt pure verification core: the whole attack list of issue 4, with keys generated here (no fakes, no I/O)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import string

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from storyverse_plugins.jwt_auth.jwks import parse_jwks
from storyverse_plugins.jwt_auth.tokens import (
    MAX_TOKEN_BYTES,
    REQUIRED_CLAIMS,
    Failure,
    Reason,
    Verified,
    VerifyConfig,
    verify,
)
from test_jwt_kit import AUDIENCE, ISSUER, NOW, VERIFY_CFG, b64, claims, jwk_of, keyset, mint, private_key, raw_token

KEYS = keyset("rsa", "ec", "ed")


def check(token: str, keys=KEYS, cfg: VerifyConfig = VERIFY_CFG, now: float = NOW):
    return verify(token, keys, cfg, now)


def refused(token: str, reason: Reason | None = None, **kwargs) -> Failure:
    result = check(token, **kwargs)
    assert isinstance(result, Failure), result
    if reason is not None:
        assert result.reason is reason, result
    assert result.public in ("invalid token", "token expired")
    return result


def resign(token: str, header_changes: dict, kind: str = "rsa") -> str:
    """Re-sign the token's payload under a modified header with a real private key (PyJWT would refuse some)."""
    header = jwt.get_unverified_header(token)
    header.update(header_changes)
    payload = jwt.decode(token, options={"verify_signature": False})
    signing_input = f"{b64(header)}.{b64(payload)}"
    signer = jwt.algorithms.get_default_algorithms()[{"rsa": "RS256", "ec": "ES256", "ed": "EdDSA"}[kind]]
    return f"{signing_input}.{b64(signer.sign(signing_input.encode(), private_key(kind)))}"


# --- what must pass ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "alg"), [("rsa", "RS256"), ("ec", "ES256"), ("ed", "EdDSA")])
def test_valid_tokens_of_every_key_type_verify(kind, alg):
    result = check(mint(kind, alg=alg))
    assert isinstance(result, Verified)
    assert result.claims["sub"] == "user-1" and result.alg == alg


def test_an_rsa_key_without_jwk_alg_verifies_rs256_and_ps256_but_a_jwk_alg_restricts_it():
    keys, _ = parse_jwks({"keys": [jwk_of("rsa", alg=None)]}, VERIFY_CFG.algorithms)
    assert isinstance(check(mint(alg="PS256"), keys=keys), Verified)
    assert isinstance(check(mint(alg="RS256"), keys=keys), Verified)
    refused(mint(alg="PS256"), Reason.BAD_ALGORITHM)  # KEYS publish alg RS256 for rsa-1


@pytest.mark.parametrize("typ", ["at+jwt", "AT+JWT", "application/at+jwt", "Application/AT+JWT"])
def test_typ_is_compared_case_insensitively_with_or_without_media_prefix(typ):
    assert isinstance(check(mint(headers={"typ": typ})), Verified)


def test_audience_may_be_a_list_containing_ours():
    assert isinstance(check(mint(aud=["other-api", AUDIENCE])), Verified)


def test_child_token_with_rating_verifies():
    assert isinstance(check(mint(role="child", age_band="6-8", content_rating="G")), Verified)


# --- alg none, null signature, key confusion ---------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE", ""])
@pytest.mark.parametrize("signature", [b"", b"anything"])
def test_alg_none_in_every_spelling_is_refused(alg, signature):
    token = raw_token({"alg": alg, "typ": "at+jwt", "kid": "rsa-1"}, claims(), signature)
    refused(token)


def test_null_signature_is_refused():
    head, body, _ = mint().split(".")
    refused(f"{head}.{body}.", Reason.MALFORMED)


def test_zero_ecdsa_signature_psychic_signature_is_refused():
    head, body, _ = mint("ec").split(".")
    refused(f"{head}.{body}.{b64(bytes(64))}", Reason.BAD_SIGNATURE)


def test_signature_from_another_key_with_our_kid_is_refused():
    token = mint("rsa2", headers={"kid": "rsa-1"})
    refused(token, Reason.BAD_SIGNATURE)


@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
def test_hmac_signed_with_the_rsa_public_key_pem_is_refused(alg):
    pem = (
        private_key("rsa")
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    head = b64({"alg": alg, "typ": "at+jwt", "kid": "rsa-1"})
    body = b64(claims())
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    sig = hmac.new(pem, f"{head}.{body}".encode(), digest).digest()
    refused(f"{head}.{body}.{b64(sig)}", Reason.BAD_ALGORITHM)
    # even a verifier configured (wrongly) with HS256 in its allowlist could not be built
    with pytest.raises(ValueError):
        VerifyConfig(issuer=ISSUER, audience=AUDIENCE, algorithms=frozenset({"HS256"}))


def test_algorithm_is_pinned_to_the_key_type():
    # an EC-signed token claiming the RSA key's kid, and an RSA signature claiming the EC key
    refused(mint("ec", headers={"kid": "rsa-1"}), Reason.BAD_ALGORITHM)
    refused(mint("rsa", headers={"kid": "ec-1"}), Reason.BAD_ALGORITHM)


def test_algorithm_outside_the_configured_allowlist_is_refused():
    rs_only = VerifyConfig(ISSUER, AUDIENCE, algorithms=frozenset({"RS256"}))
    refused(mint("ec"), Reason.BAD_ALGORITHM, cfg=rs_only)


# --- header members that smuggle keys or policy --------------------------------------------------------------------


def test_embedded_jwk_is_refused_even_with_a_matching_signature():
    attacker = private_key("rsa2")
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(attacker.public_key()))
    token = jwt.encode(claims(), attacker, algorithm="RS256", headers={"typ": "at+jwt", "kid": "rsa-1", "jwk": jwk})
    refused(token, Reason.FORBIDDEN_HEADER)


@pytest.mark.parametrize(
    ("member", "value"),
    [
        ("jku", "https://attacker.example/jwks.json"),
        ("x5u", "https://attacker.example/cert.pem"),
        ("x5c", ["MIIB..."]),
        ("crit", ["exp"]),
        ("crit", ["x-storyverse"]),
        ("b64", False),
        ("zip", "DEF"),
        ("jku", None),
    ],
)
def test_forbidden_header_members_are_refused_even_when_properly_signed(member, value):
    token = resign(mint(), {member: value, "x-storyverse": 1})
    refused(token, Reason.FORBIDDEN_HEADER)


# --- kid injection and unknown kids ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kid",
    [
        "../../../../../../dev/null",
        "/dev/null",
        "/invalid_path",
        "",
        "x' UNION SELECT '1';--",
        "1 OR 1=1",
        "|sleep 10",
        "| curl http://attacker.example",
        "; rm -rf /",
        "$(id)",
        "`id`",
        "rsa-1\x00",
        "k" * 129,
        None,
        0,
        True,
        ["rsa-1"],
        {"kid": "rsa-1"},
    ],
)
def test_injected_or_ill_typed_kid_is_refused_before_any_lookup(kid):
    header = {"alg": "HS256", "typ": "at+jwt", "kid": kid}
    head, body = b64(header), b64(claims())
    sig = hmac.new(b"1", f"{head}.{body}".encode(), hashlib.sha256).digest()
    refused(f"{head}.{body}.{b64(sig)}")
    # and with an allowed algorithm and a real signature, the kid alone stops it
    refused(resign(mint(), {"kid": kid}), Reason.BAD_KID)


def test_unknown_kid_is_refused_and_reported_for_a_refetch():
    failure = refused(mint(headers={"kid": "not-in-the-set"}), Reason.UNKNOWN_KID)
    assert failure.kid == "not-in-the-set"


# --- times -----------------------------------------------------------------------------------------------------------


def test_expired_token_says_token_expired():
    failure = refused(mint(exp=NOW - 31), Reason.EXPIRED)
    assert failure.public == "token expired"


def test_expiry_within_leeway_passes_and_leeway_is_capped():
    assert isinstance(check(mint(exp=NOW - 29)), Verified)
    with pytest.raises(ValueError):
        VerifyConfig(ISSUER, AUDIENCE, leeway=61)


def test_nbf_in_the_future_is_refused():
    refused(mint(nbf=NOW + 31), Reason.NOT_YET_VALID)
    assert isinstance(check(mint(nbf=NOW + 29)), Verified)


def test_iat_in_the_future_is_refused():
    refused(mint(iat=NOW + 120), Reason.ISSUED_IN_FUTURE)


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
@pytest.mark.parametrize("value", ["1800000600", True, None, [1]])
def test_non_numeric_times_are_refused(claim, value):
    token = mint(**{claim: value}) if value is not None else mint(**{claim: None})
    refused(token)


# --- issuer, audience, type, claims ----------------------------------------------------------------------------------


@pytest.mark.parametrize("aud", ["other-api", "storyverse", "storyverse-api-2", ["other"], []])
def test_wrong_audience_is_refused(aud):
    refused(mint(aud=aud))


@pytest.mark.parametrize("iss", ["https://evil.example", ISSUER + ".evil", ISSUER + "/", "https://auth.storyverse"])
def test_wrong_or_partially_matching_issuer_is_refused(iss):
    refused(mint(iss=iss), Reason.BAD_ISSUER)


@pytest.mark.parametrize("typ", [None, "JWT", "jwt", "id_token+jwt", "reset+jwt", "at+jwt+", "", 1])
def test_wrong_typ_id_token_or_reset_token_is_refused(typ):
    token = mint(headers={"typ": typ}) if isinstance(typ, str) or typ is None else resign(mint(), {"typ": typ})
    refused(token, Reason.BAD_TYPE)


@pytest.mark.parametrize("claim", REQUIRED_CLAIMS)
def test_each_required_claim_is_required(claim):
    refused(mint(**{claim: None}))


@pytest.mark.parametrize(
    "overrides",
    [
        {"role": "superuser"},
        {"tier": "platinum"},
        {"role": "child"},  # a child without age band and content rating
        {"role": "child", "age_band": "6-8"},
        {"sub": "user-1\r\nX-User-Role: admin"},
        {"sub": ""},
        {"family_id": 42},
        {"content_rating": "G PG"},
        {"jti": "j" * 200},
    ],
)
def test_bad_claim_values_are_refused(overrides):
    refused(mint(**overrides))


# --- size and shape --------------------------------------------------------------------------------------------------


def test_token_over_8_kib_is_refused_before_parsing():
    big = mint(pad="x" * MAX_TOKEN_BYTES)
    assert len(big) > MAX_TOKEN_BYTES
    refused(big, Reason.TOO_LARGE)
    refused("a" * (MAX_TOKEN_BYTES + 1), Reason.TOO_LARGE)


@pytest.mark.parametrize("cut", [1, 5, 40, 200])
def test_truncated_tokens_are_refused(cut):
    refused(mint()[:-cut])


@pytest.mark.parametrize(
    "token",
    ["", "abc", "a.b", "a.b.c.d", "a.b.c.d.e", "...", "é.é.é", "eyJ.eyJ.", "Bearer x.y.z", None, 42],
)
def test_malformed_tokens_are_refused(token):
    refused(token)


def test_header_that_is_not_an_object_is_refused():
    head = base64.urlsafe_b64encode(b'["alg","RS256"]').rstrip(b"=").decode()
    _, body, sig = mint().split(".")
    refused(f"{head}.{body}.{sig}", Reason.MALFORMED)


@pytest.mark.parametrize("value", [None, True, False, "jwt_tool", 0, 1.5, [], {}])
@pytest.mark.parametrize("member", ["alg", "typ", "kid", "cty"])
def test_forced_error_values_in_header_members_never_raise(member, value):
    result = check(resign(mint(), {member: value}))
    assert isinstance(result, Failure) or member == "cty"


def test_random_garbage_never_raises():
    rng = random.Random(4)
    alphabet = string.ascii_letters + string.digits + "-_.=+/"
    base = mint()
    for _ in range(500):
        chars = list(base)
        for _ in range(rng.randint(1, 8)):
            chars[rng.randrange(len(chars))] = rng.choice(alphabet)
        result = check("".join(chars))
        assert isinstance(result, Failure | Verified)
        junk = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 300)))
        assert isinstance(check(junk), Failure)
