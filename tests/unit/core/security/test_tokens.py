from __future__ import annotations

import time

import jwt
import pytest
from pydantic import SecretStr

from core.errors import Unauthorized
from core.security.tokens import AUDIENCE, TokenExpired, TokenService, VisitorClaims
from core.settings import Settings
from tests.forged_tokens import access_claims, hmac_with, rsa_key_pair, signed, unsigned

SECRET = "unit-test-jwt-secret-of-a-decent-length"


@pytest.fixture
def tokens() -> TokenService:
    return TokenService(Settings(jwt_secret=SecretStr(SECRET), access_token_ttl_s=60))


def refused(tokens: TokenService, token: str) -> str:
    with pytest.raises(Unauthorized) as caught:
        tokens.read_access(token)
    return caught.value.message


def test_access_token_round_trip(tokens: TokenService) -> None:
    claims = tokens.read_access(tokens.access_token("usr_1", "ws_1", "agent", "ses_1"))
    assert (claims.user_id, claims.workspace_id, claims.role, claims.session_id) == (
        "usr_1", "ws_1", "agent", "ses_1",
    )  # fmt: skip


def test_access_token_expires_after_its_ttl(tokens: TokenService) -> None:
    payload = jwt.decode(
        tokens.access_token("usr_1", "ws_1", "agent", "ses_1"),
        SECRET,
        algorithms=["HS256"],
        audience=AUDIENCE,
    )
    assert payload["exp"] - payload["iat"] == 60


def test_refresh_token_round_trip(tokens: TokenService) -> None:
    token, issued = tokens.refresh_token("usr_1", "ses_1")
    read = tokens.read_refresh(token)
    assert (read.user_id, read.family_id, read.token_id) == ("usr_1", "ses_1", issued.token_id)
    assert abs(read.expires_at - issued.expires_at) <= 1
    assert tokens.refresh_token("usr_1", "ses_1")[1].token_id != issued.token_id


def test_a_token_signed_by_us_is_accepted(tokens: TokenService) -> None:
    assert tokens.read_access(signed(access_claims(), SECRET)).user_id == "usr_1"


def test_alg_none_is_refused(tokens: TokenService) -> None:
    assert refused(tokens, unsigned(access_claims())) == "the token is not valid"


def test_another_key_is_refused(tokens: TokenService) -> None:
    refused(tokens, signed(access_claims(), "some-other-secret-of-a-decent-length"))


def test_hs256_with_a_public_key_as_secret_is_refused(tokens: TokenService) -> None:
    _, public = rsa_key_pair()
    refused(tokens, hmac_with(access_claims(), public.encode()))


def test_rs256_is_refused(tokens: TokenService) -> None:
    private, _ = rsa_key_pair()
    refused(tokens, jwt.encode(access_claims(), private, algorithm="RS256"))


def test_another_hmac_algorithm_is_refused(tokens: TokenService) -> None:
    refused(tokens, hmac_with(access_claims(), SECRET.encode(), alg="HS512"))


def test_expired_is_refused(tokens: TokenService) -> None:
    claims = {**access_claims(), "iat": int(time.time()) - 120, "exp": int(time.time()) - 60}
    assert refused(tokens, signed(claims, SECRET)) == "the token has expired"


def test_wrong_audience_is_refused(tokens: TokenService) -> None:
    refused(tokens, signed({**access_claims(), "aud": "someone-else"}, SECRET))


@pytest.mark.parametrize("claim", ["exp", "iat", "sub", "typ", "aud"])
def test_a_missing_claim_is_refused(tokens: TokenService, claim: str) -> None:
    claims = access_claims()
    del claims[claim]
    refused(tokens, signed(claims, SECRET))


def test_a_refresh_token_is_not_an_access_token(tokens: TokenService) -> None:
    token, _ = tokens.refresh_token("usr_1", "ses_1")
    assert refused(tokens, token) == "this token is not of type 'access'"


def test_an_access_token_is_not_a_refresh_token(tokens: TokenService) -> None:
    with pytest.raises(Unauthorized, match="not of type 'refresh'"):
        tokens.read_refresh(tokens.access_token("usr_1", "ws_1", "agent", "ses_1"))


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "a.b", "Bearer x.y.z"])
def test_garbage_is_refused(tokens: TokenService, garbage: str) -> None:
    refused(tokens, garbage)


def test_a_tampered_payload_is_refused(tokens: TokenService) -> None:
    header, _, signature = tokens.access_token("usr_1", "ws_1", "agent", "ses_1").split(".")
    elevated = signed(access_claims(role="owner"), SECRET).split(".")[1]
    refused(tokens, f"{header}.{elevated}.{signature}")


def visitor_claims(**changes: object) -> dict[str, object]:
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": "v_1", "typ": "visitor", "app": "app_1", "aud": AUDIENCE, "iat": now,
        "exp": now + 600,
    }  # fmt: skip
    return {**claims, **changes}


def test_visitor_token_round_trip(tokens: TokenService) -> None:
    assert tokens.read_visitor(tokens.visitor_token("v_1", "app_1")) == VisitorClaims(
        "v_1", "app_1"
    )
    assert tokens.read_visitor(signed(visitor_claims(), SECRET)) == VisitorClaims("v_1", "app_1")


def test_visitor_token_lives_for_its_ttl() -> None:
    service = TokenService(Settings(jwt_secret=SecretStr(SECRET), visitor_token_ttl_s=3600))
    payload = jwt.decode(
        service.visitor_token("v_1", "app_1"), SECRET, algorithms=["HS256"], audience=AUDIENCE
    )
    assert payload["exp"] - payload["iat"] == 3600


def test_an_access_token_is_not_a_visitor_token(tokens: TokenService) -> None:
    with pytest.raises(Unauthorized, match="not of type 'visitor'"):
        tokens.read_visitor(tokens.access_token("usr_1", "ws_1", "agent", "ses_1"))


def test_a_refresh_token_is_not_a_visitor_token(tokens: TokenService) -> None:
    token, _ = tokens.refresh_token("usr_1", "ses_1")
    with pytest.raises(Unauthorized, match="not of type 'visitor'"):
        tokens.read_visitor(token)


def test_a_visitor_token_is_neither_an_access_nor_a_refresh_token(tokens: TokenService) -> None:
    token = tokens.visitor_token("v_1", "app_1")
    assert refused(tokens, token) == "this token is not of type 'access'"
    with pytest.raises(Unauthorized, match="not of type 'refresh'"):
        tokens.read_refresh(token)


def test_an_expired_visitor_token_says_so(tokens: TokenService) -> None:
    now = int(time.time())
    expired = signed(visitor_claims(iat=now - 120, exp=now - 60), SECRET)
    with pytest.raises(TokenExpired, match="the token has expired") as caught:
        tokens.read_visitor(expired)
    assert isinstance(caught.value, Unauthorized)


def test_a_visitor_token_of_another_secret_is_refused(tokens: TokenService) -> None:
    other = TokenService(Settings(jwt_secret=SecretStr("some-other-secret-of-a-decent-length")))
    with pytest.raises(Unauthorized, match="the token is not valid") as caught:
        tokens.read_visitor(other.visitor_token("v_1", "app_1"))
    assert not isinstance(caught.value, TokenExpired)
