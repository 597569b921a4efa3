from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable, Mapping

import pytest
from starlette.datastructures import Headers

from router.server.auth import (
    AuthConfig,
    AuthConfigError,
    HmacConfig,
    refused_scheme,
    verify_admin,
    verify_webhook,
)
from router.server.hmacauth import SeenIds
from router.server.oauth import OAuthIssuer

NOW = 1_750_000_000.0
BODY = b'{"message": {"type": "assistant-request", "call": {"id": "c1"}}}'
SECRET = b"s3cret-Value"
HKEY = b"hmac-Key"
SIGNED = AuthConfig(hmac=HmacConfig(HKEY))
ISSUER = OAuthIssuer(b"vapi", b"client-Secret", b"k" * 32)


def sign(
    timestamp: str,
    body: bytes = BODY,
    *,
    key: bytes = HKEY,
    algorithm: str = "sha256",
    encoding: str = "hex",
) -> str:
    """Vapi's side, written out independently of router.server.auth: enc(HMAC(key, "{timestamp}.{body}"))."""
    digest = hmac.new(key, timestamp.encode() + b"." + body, getattr(hashlib, algorithm)).digest()
    return digest.hex() if encoding == "hex" else base64.b64encode(digest).decode()


@pytest.fixture(params=["mapping", "wire"])
def form(request: pytest.FixtureRequest) -> Callable[[Mapping[str, str]], Mapping[str, str]]:
    """Headers as a plain mapping, or as the server hands them over (Starlette's Headers on the
    raw bytes, which auth reads without decoding): every table runs both ways."""
    if request.param == "mapping":
        return lambda headers: headers
    return lambda headers: Headers(
        raw=[(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    )


Form = Callable[[Mapping[str, str]], Mapping[str, str]]


def signed(offset: float = 0, body: bytes = BODY, *, ms: bool = False, **headers: str) -> dict[str, str]:
    """Default-named HMAC headers for a request sent at NOW + offset; extra headers override."""
    ts = str(int((NOW + offset) * 1000)) if ms else str(int(NOW + offset))
    return {"x-timestamp": ts, "x-signature": sign(ts, body)} | headers


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param({"x-vapi-secret": "s3cret-Value"}, True, id="x-vapi-secret"),
        pytest.param({"X-Vapi-Secret": "s3cret-Value"}, True, id="x-vapi-secret-name-cased"),
        pytest.param({"X-VAPI-SECRET": "s3cret-Value"}, True, id="x-vapi-secret-name-upper"),
        pytest.param({"authorization": "Bearer s3cret-Value"}, True, id="bearer"),
        pytest.param({"AUTHORIZATION": "bearer s3cret-Value"}, True, id="bearer-scheme-and-name-cased"),
        pytest.param({"x-vapi-secret": "s3cret-value"}, False, id="secret-value-cased"),
        pytest.param({"authorization": "Bearer S3CRET-VALUE"}, False, id="bearer-value-cased"),
        pytest.param({"x-vapi-secret": "wrong"}, False, id="wrong"),
        pytest.param({"x-vapi-secret": "s3cret-Valu"}, False, id="prefix-of-secret"),
        pytest.param({"x-vapi-secret": "s3cret-Value2"}, False, id="secret-plus-one"),
        pytest.param({"x-vapi-secret": ""}, False, id="empty"),
        pytest.param({}, False, id="missing"),
        pytest.param({"x-vapi-signature": "s3cret-Value"}, False, id="wrong-header-name"),
        pytest.param({"x-vapi-secret": "Bearer s3cret-Value"}, False, id="bearer-in-legacy-header"),
        pytest.param({"authorization": "s3cret-Value"}, False, id="authorization-without-scheme"),
        pytest.param({"authorization": "Basic s3cret-Value"}, False, id="basic-scheme"),
        pytest.param({"authorization": "Bearer  s3cret-Value"}, False, id="bearer-two-spaces"),
        pytest.param({"authorization": "Bearer"}, False, id="bearer-no-token"),
        pytest.param({"x-vapi-secret": "s3cret-Value, s3cret-Value"}, False, id="joined-repeat"),
        pytest.param({"x-vapi-secret": "wrong, s3cret-Value"}, False, id="joined-repeat-second-right"),
        pytest.param(
            {"x-vapi-secret": "s3cret-Value", "X-Vapi-Secret": "s3cret-Value"}, False, id="repeat-by-case"
        ),
        pytest.param({"x-vapi-secret": "s3cret-Value", "x-signature": "junk"}, True, id="extra-headers"),
        # RFC 9110 5.5: surrounding whitespace is not part of the value (httptools keeps it)
        pytest.param({"x-vapi-secret": "s3cret-Value \t"}, True, id="trailing-whitespace"),
        pytest.param({"authorization": "Bearer s3cret-Value "}, True, id="bearer-trailing-space"),
        pytest.param({"x-vapi-secret": "s3cret-Value\n"}, False, id="trailing-newline-is-not-whitespace"),
    ],
)
def test_shared_secret(headers: dict[str, str], expected: bool, form: Form) -> None:
    assert verify_webhook(AuthConfig(secret=SECRET), form(headers), BODY, now=NOW) is expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param([(b"x-vapi-secret", b"s3cret-Value")], True, id="once"),
        pytest.param([(b"x-vapi-secret", b"s3cret-Value")] * 2, False, id="repeated"),
        pytest.param(
            [(b"x-vapi-secret", b"wrong"), (b"x-vapi-secret", b"s3cret-Value")], False, id="wrong-first"
        ),
    ],
)
def test_starlette_headers_repeated(raw: list[tuple[bytes, bytes]], expected: bool) -> None:
    assert verify_webhook(AuthConfig(secret=SECRET), Headers(raw=raw), BODY, now=NOW) is expected


@pytest.mark.parametrize(
    ("size", "expected"),
    [pytest.param(4096, True, id="at-limit"), pytest.param(4097, False, id="over-limit")],
)
def test_oversized_header_fails(size: int, expected: bool, form: Form) -> None:
    config = AuthConfig(secret=b"x" * size)
    assert verify_webhook(config, form({"x-vapi-secret": "x" * size}), BODY, now=NOW) is expected


def test_non_ascii_secret_round_trips_latin1_decoded_header(form: Form) -> None:
    secret = "clé-☎".encode()
    wire = secret.decode("latin-1")  # what Starlette hands over for these bytes
    assert verify_webhook(AuthConfig(secret=secret), form({"x-vapi-secret": wire}), BODY, now=NOW)


@pytest.mark.parametrize("algorithm", ["sha256", "sha512", "sha1"])
@pytest.mark.parametrize("encoding", ["hex", "base64"])
def test_hmac_algorithms_and_encodings(algorithm: str, encoding: str) -> None:
    config = AuthConfig(hmac=HmacConfig(HKEY, algorithm=algorithm, encoding=encoding))
    ts = str(int(NOW))
    good = sign(ts, algorithm=algorithm, encoding=encoding)
    assert verify_webhook(config, {"x-timestamp": ts, "x-signature": good}, BODY, now=NOW)
    assert not verify_webhook(config, {"x-timestamp": ts, "x-signature": good}, BODY + b" ", now=NOW)
    other = "sha1" if algorithm != "sha1" else "sha256"
    wrong = sign(ts, algorithm=other, encoding=encoding)
    assert not verify_webhook(config, {"x-timestamp": ts, "x-signature": wrong}, BODY, now=NOW)


TS = str(int(NOW))
GOOD = sign(TS)


@pytest.mark.parametrize(
    ("headers", "body", "expected"),
    [
        pytest.param(signed(), BODY, True, id="valid"),
        pytest.param(signed(ms=True), BODY, True, id="milliseconds"),
        pytest.param(signed(-300), BODY, True, id="exactly-300s-old"),
        pytest.param(signed(+300), BODY, True, id="exactly-300s-ahead"),
        pytest.param(signed(-301), BODY, False, id="stale-301s"),
        pytest.param(signed(+301), BODY, False, id="future-301s"),
        pytest.param(signed(-301, ms=True), BODY, False, id="stale-301s-ms"),
        pytest.param(signed(), BODY[:-1] + b"]", False, id="body-one-byte-changed"),
        pytest.param(signed(), BODY + b"\n", False, id="body-one-byte-added"),
        pytest.param(signed(body=json.dumps(json.loads(BODY)).encode()), BODY, True, id="same-bytes"),
        pytest.param(
            signed(body=json.dumps(json.loads(BODY), separators=(",", ":")).encode()),
            BODY,
            False,
            id="signed-reserialized-json",
        ),
        pytest.param(signed(body=b"\xff\xfe not utf-8"), b"\xff\xfe not utf-8", True, id="non-utf8-body"),
        pytest.param({"x-timestamp": TS, "x-signature": "sha256=" + GOOD}, BODY, True, id="sha256=-prefix"),
        pytest.param({"x-timestamp": TS, "x-signature": "SHA256=" + GOOD}, BODY, True, id="SHA256=-prefix"),
        pytest.param({"x-timestamp": TS, "x-signature": "sha512=" + GOOD}, BODY, False, id="other-prefix"),
        pytest.param({"x-timestamp": TS, "x-signature": "v1," + GOOD}, BODY, False, id="v1-prefix"),
        pytest.param({"x-timestamp": TS, "x-signature": GOOD.upper()}, BODY, True, id="upper-hex"),
        pytest.param({"X-Timestamp": TS, "X-SIGNATURE": GOOD}, BODY, True, id="header-names-cased"),
        pytest.param({"x-timestamp": TS}, BODY, False, id="no-signature"),
        pytest.param({"x-signature": GOOD}, BODY, False, id="no-timestamp"),
        pytest.param({"x-timestamp": TS, "x-signature": ""}, BODY, False, id="empty-signature"),
        pytest.param({"x-timestamp": "", "x-signature": sign("")}, BODY, False, id="empty-timestamp"),
        pytest.param({"x-timestamp": "abc", "x-signature": sign("abc")}, BODY, False, id="non-numeric"),
        pytest.param({"x-timestamp": "1.75e9", "x-signature": sign("1.75e9")}, BODY, False, id="exponent"),
        pytest.param({"x-timestamp": "-1", "x-signature": sign("-1")}, BODY, False, id="negative"),
        pytest.param({"x-timestamp": TS + ".5", "x-signature": sign(TS + ".5")}, BODY, True, id="fraction"),
        pytest.param({"x-timestamp": str(int(NOW) + 1), "x-signature": GOOD}, BODY, False, id="ts-swapped"),
        pytest.param({"x-timestamp": TS, "x-signature": sign(TS, key=b"other")}, BODY, False, id="wrong-key"),
        pytest.param({"x-timestamp": TS, "x-signature": f"{GOOD}, {GOOD}"}, BODY, False, id="sig-repeated"),
        pytest.param(
            {"x-timestamp": f"{TS}, {TS}", "x-signature": sign(f"{TS}, {TS}")}, BODY, False, id="ts-repeated"
        ),
        pytest.param({"x-timestamp": TS, "x-signature": GOOD + "0" * 4096}, BODY, False, id="sig-oversized"),
        pytest.param({"x-vapi-secret": "hmac-Key"}, BODY, False, id="hmac-key-as-shared-secret"),
    ],
)
def test_hmac(headers: dict[str, str], body: bytes, expected: bool, form: Form) -> None:
    assert verify_webhook(SIGNED, form(headers), body, now=NOW) is expected


def test_hmac_custom_headers_and_payload() -> None:
    config = AuthConfig(
        hmac=HmacConfig(
            HKEY,
            header="X-Vapi-Signature",
            timestamp_header="X-Vapi-Timestamp",
            payload="{method} {url}\n{timestamp}\n{{literal}}{body}",
            encoding="base64",
        )
    )
    url = "https://router.example/webhook/vapi?x=1"
    message = f"POST {url}\n{TS}\n{{literal}}".encode() + BODY
    signature = base64.b64encode(hmac.new(HKEY, message, hashlib.sha256).digest()).decode()
    headers = {"x-vapi-signature": signature, "x-vapi-timestamp": TS}
    assert verify_webhook(config, headers, BODY, now=NOW, method="POST", url=url)
    assert not verify_webhook(config, headers, BODY, now=NOW, method="PUT", url=url)
    assert not verify_webhook(config, headers, BODY, now=NOW, method="POST", url=url + "&y=2")
    assert not verify_webhook(config, signed(), BODY, now=NOW, method="POST", url=url)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param({"x-vapi-secret": "s3cret-Value"}, True, id="secret-only"),
        pytest.param({"authorization": "Bearer s3cret-Value"}, True, id="bearer-only"),
        pytest.param(signed(), True, id="hmac-only"),
        pytest.param(signed(-1000) | {"x-vapi-secret": "s3cret-Value"}, True, id="stale-hmac-good-secret"),
        pytest.param(signed() | {"x-vapi-secret": "wrong"}, True, id="good-hmac-wrong-secret"),
        pytest.param(signed(-1000) | {"x-vapi-secret": "wrong"}, False, id="both-wrong"),
        pytest.param({}, False, id="neither"),
    ],
)
def test_any_configured_scheme_admits(headers: dict[str, str], expected: bool, form: Form) -> None:
    config = AuthConfig(secret=SECRET, hmac=HmacConfig(HKEY))
    assert verify_webhook(config, form(headers), BODY, now=NOW) is expected


def test_nothing_configured_admits() -> None:
    assert not AuthConfig().webhook_configured
    assert verify_webhook(AuthConfig(), {}, BODY, now=NOW)
    assert verify_webhook(AuthConfig(admin_token=b"adm"), {}, BODY, now=NOW)  # admin is not webhook auth


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        pytest.param({}, AuthConfig(), id="empty"),
        pytest.param(
            {
                "VAPI_SERVER_SECRET": "",
                "VAPI_HMAC_SECRET": "",
                "VAPI_HMAC_ALGORITHM": "",
                "ROUTER_ADMIN_TOKEN": "",
            },
            AuthConfig(),
            id="empty-strings-are-unset",
        ),
        pytest.param(
            {"VAPI_SERVER_SECRET": "s3cret-Value", "ROUTER_ADMIN_TOKEN": "adm"},
            AuthConfig(secret=SECRET, admin_token=b"adm"),
            id="secret-and-admin",
        ),
        pytest.param({"VAPI_HMAC_SECRET": "hmac-Key"}, SIGNED, id="hmac-defaults"),
        pytest.param(
            {
                "VAPI_HMAC_SECRET": "hmac-Key",
                "VAPI_HMAC_HEADER": "x-vapi-signature",
                "VAPI_HMAC_TIMESTAMP_HEADER": "x-vapi-timestamp",
                "VAPI_HMAC_ALGORITHM": "SHA512",
                "VAPI_HMAC_ENCODING": "Base64",
                "VAPI_HMAC_PAYLOAD": "{timestamp}:{method}:{url}:{body}",
                "VAPI_HMAC_PAYLOAD_UNRELATED": "ignored",
            },
            AuthConfig(
                hmac=HmacConfig(
                    HKEY,
                    "x-vapi-signature",
                    "x-vapi-timestamp",
                    "sha512",
                    "base64",
                    "{timestamp}:{method}:{url}:{body}",
                )
            ),
            id="hmac-all-options",
        ),
    ],
)
def test_from_env(env: dict[str, str], expected: AuthConfig) -> None:
    assert AuthConfig.from_env(env) == expected


PLACEHOLDERS_MSG = (
    "VAPI_HMAC_PAYLOAD may use only the placeholders {timestamp}, {body}, {method}, {url}, {svix-id}"
)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        pytest.param(
            {"VAPI_HMAC_ALGORITHM": "TOPSECRET"},
            "VAPI_HMAC_ALGORITHM must be one of sha256, sha512, sha1",
            id="secret-pasted-as-algorithm",
        ),
        pytest.param(
            {"VAPI_HMAC_ALGORITHM": "md5"},
            "VAPI_HMAC_ALGORITHM must be one of sha256, sha512, sha1",
            id="md5",
        ),
        pytest.param(
            {"VAPI_HMAC_ENCODING": "base32"}, "VAPI_HMAC_ENCODING must be one of hex, base64", id="enc"
        ),
        pytest.param({"VAPI_HMAC_PAYLOAD": "{timestamp}.{TOPSECRET}"}, PLACEHOLDERS_MSG, id="unknown-name"),
        pytest.param(
            {"VAPI_HMAC_PAYLOAD": "{timestamp}.{body}.{svix-id}"},
            "VAPI_HMAC_PAYLOAD uses {svix-id}: set VAPI_HMAC_MESSAGE_ID_HEADER to the header that carries it",
            id="svix-id-without-its-header",
        ),
        pytest.param({"VAPI_HMAC_PAYLOAD": "{timestamp}.{}{body}"}, PLACEHOLDERS_MSG, id="positional"),
        pytest.param({"VAPI_HMAC_PAYLOAD": "{timestamp}.{body!r}"}, PLACEHOLDERS_MSG, id="conversion"),
        pytest.param({"VAPI_HMAC_PAYLOAD": "{timestamp:>20}.{body}"}, PLACEHOLDERS_MSG, id="format-spec"),
        pytest.param(
            {"VAPI_HMAC_PAYLOAD": "{timestamp}.{body"},
            "VAPI_HMAC_PAYLOAD has an unmatched brace (write {{ or }} for a literal one)",
            id="unmatched-brace",
        ),
        pytest.param(
            {"VAPI_HMAC_PAYLOAD": "{method}.{body}"},
            "VAPI_HMAC_PAYLOAD must include {timestamp} and {body}",
            id="timestamp-not-signed",
        ),
        pytest.param(
            {"VAPI_HMAC_PAYLOAD": "{timestamp}"},
            "VAPI_HMAC_PAYLOAD must include {timestamp} and {body}",
            id="body-not-signed",
        ),
    ],
)
def test_from_env_errors(env: dict[str, str], message: str) -> None:
    full = {"VAPI_SERVER_SECRET": "TOPSECRET", "VAPI_HMAC_SECRET": "TOPSECRET-hmac"} | env
    with pytest.raises(AuthConfigError) as caught:
        AuthConfig.from_env(full)
    assert str(caught.value) == message
    assert "TOPSECRET" not in str(caught.value)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        pytest.param(
            {"VAPI_HMAC_HEADER": "x-vapi-signature", "VAPI_HMAC_ALGORITHM": "sha512"},
            "VAPI_HMAC_HEADER, VAPI_HMAC_ALGORITHM set but VAPI_HMAC_SECRET is not: HMAC would be off",
            id="hmac-options-without-secret",
        ),
        pytest.param(
            {"VAPI_SERVER_SECRET": "TOPSECRET\n"},
            "VAPI_SERVER_SECRET has leading or trailing whitespace (a stray newline?)",
            id="secret-newline",
        ),
        pytest.param(
            {"ROUTER_ADMIN_TOKEN": " TOPSECRET"},
            "ROUTER_ADMIN_TOKEN has leading or trailing whitespace (a stray newline?)",
            id="admin-space",
        ),
    ],
)
def test_from_env_inconsistent(env: dict[str, str], message: str) -> None:
    with pytest.raises(AuthConfigError) as caught:
        AuthConfig.from_env(env)
    assert str(caught.value) == message
    assert "TOPSECRET" not in str(caught.value)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        pytest.param(
            lambda: AuthConfig(secret=b""), "VAPI_SERVER_SECRET must not be empty", id="empty-secret"
        ),
        pytest.param(
            lambda: AuthConfig(admin_token=b""), "ROUTER_ADMIN_TOKEN must not be empty", id="empty-admin"
        ),
        pytest.param(lambda: HmacConfig(b""), "VAPI_HMAC_SECRET must not be empty", id="empty-hmac"),
        pytest.param(
            lambda: HmacConfig(HKEY, window_s=-1),
            "HMAC replay window must be a finite number of seconds >= 0",
            id="negative-window",
        ),
    ],
)
def test_direct_construction_errors(build: Callable[[], object], message: str) -> None:
    with pytest.raises(AuthConfigError) as caught:
        build()
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        pytest.param(AuthConfig(), "none", id="none"),
        pytest.param(AuthConfig(secret=SECRET, admin_token=b"adm"), "x-vapi-secret/Bearer", id="secret"),
        pytest.param(SIGNED, "HMAC sha256 hex in x-signature", id="hmac"),
        pytest.param(
            AuthConfig(secret=SECRET, hmac=HmacConfig(HKEY, header="x-vapi-signature", encoding="base64")),
            "x-vapi-secret/Bearer, HMAC sha256 base64 in x-vapi-signature",
            id="both",
        ),
    ],
)
def test_describe(config: AuthConfig, expected: str) -> None:
    assert config.describe() == expected
    for secret in (SECRET, HKEY, b"adm"):
        assert secret.decode() not in config.describe()


ADMIN = AuthConfig(secret=SECRET, admin_token=b"adm-Token")


@pytest.mark.parametrize(
    ("config", "headers", "expected"),
    [
        pytest.param(ADMIN, {"authorization": "Bearer adm-Token"}, True, id="bearer"),
        pytest.param(ADMIN, {"Authorization": "bearer adm-Token"}, True, id="cased-name-and-scheme"),
        pytest.param(ADMIN, {"authorization": "Bearer ADM-TOKEN"}, False, id="token-cased"),
        pytest.param(ADMIN, {"authorization": "Bearer adm-Toke"}, False, id="token-prefix"),
        pytest.param(ADMIN, {"authorization": "adm-Token"}, False, id="no-scheme"),
        pytest.param(ADMIN, {"x-vapi-secret": "adm-Token"}, False, id="legacy-header"),
        pytest.param(ADMIN, {"authorization": "Bearer s3cret-Value"}, False, id="webhook-secret"),
        pytest.param(ADMIN, {}, False, id="missing"),
        pytest.param(
            AuthConfig(secret=SECRET), {"authorization": "Bearer "}, False, id="no-token-configured"
        ),
        pytest.param(
            AuthConfig(secret=SECRET), {"authorization": "Bearer s3cret-Value"}, False, id="no-admin"
        ),
    ],
)
def test_verify_admin(config: AuthConfig, headers: dict[str, str], expected: bool, form: Form) -> None:
    assert verify_admin(config, form(headers)) is expected


# ------------------------------------------------------------------ DESIGN §10: Bearer options


@pytest.mark.parametrize(
    ("header", "prefix", "headers", "expected"),
    [
        pytest.param("Authorization", True, {"authorization": "Bearer s3cret-Value"}, True, id="default"),
        pytest.param("Authorization", True, {"authorization": "s3cret-Value"}, False, id="default-no-prefix"),
        pytest.param("Authorization", False, {"authorization": "s3cret-Value"}, True, id="raw-authorization"),
        pytest.param(
            "Authorization", False, {"authorization": "Bearer s3cret-Value"}, False, id="raw-refuses-prefixed"
        ),
        pytest.param("X-Api-Key", True, {"x-api-key": "Bearer s3cret-Value"}, True, id="custom-with-prefix"),
        pytest.param("X-Api-Key", True, {"x-api-key": "s3cret-Value"}, False, id="custom-prefix-missing"),
        pytest.param("X-Api-Key", False, {"X-API-KEY": "s3cret-Value"}, True, id="custom-raw"),
        pytest.param("X-Api-Key", False, {"x-api-key": "s3cret-Valu"}, False, id="custom-raw-wrong"),
        pytest.param(
            "X-Api-Key", False, {"authorization": "Bearer s3cret-Value"}, False, id="custom-not-authorization"
        ),
        # Vapi's docs: the old server secret is a Bearer credential on X-Vapi-Secret, prefix off
        pytest.param("X-Vapi-Secret", False, {"x-vapi-secret": "s3cret-Value"}, True, id="x-vapi-secret-raw"),
        pytest.param(
            "X-Api-Key", False, {"x-vapi-secret": "s3cret-Value"}, True, id="legacy-header-still-works"
        ),
        pytest.param(
            "X-Api-Key", False, {"x-api-key": "s3cret-Value", "X-Api-Key": "x"}, False, id="repeated"
        ),
    ],
)
def test_bearer_header_and_prefix(
    header: str, prefix: bool, headers: dict[str, str], expected: bool, form: Form
) -> None:
    config = AuthConfig(secret=SECRET, bearer_header=header, bearer_prefix=prefix)
    assert verify_webhook(config, form(headers), BODY, now=NOW) is expected


# ------------------------------------------------------------------ DESIGN §10: HMAC options


def hsign(message: bytes, key: bytes = HKEY, algorithm: str = "sha256", encoding: str = "hex") -> str:
    digest = hmac.new(key, message, getattr(hashlib, algorithm)).digest()
    return digest.hex() if encoding == "hex" else base64.b64encode(digest).decode()


SIG_BODY = hsign(BODY)
SIG_TS_BODY = hsign(f"{TS}.".encode() + BODY)


@pytest.mark.parametrize(
    ("config", "headers", "expected"),
    [
        pytest.param(
            HmacConfig(HKEY, signature_prefix="sha256="),
            {"x-signature": "sha256=" + SIG_TS_BODY},
            True,
            id="prefix",
        ),
        pytest.param(
            HmacConfig(HKEY, signature_prefix="sha256="),
            {"x-signature": SIG_TS_BODY},
            False,
            id="prefix-missing",
        ),
        pytest.param(
            HmacConfig(HKEY, signature_prefix="sha256="),
            {"x-signature": "SHA256=" + SIG_TS_BODY},
            False,
            id="prefix-exact-case",
        ),
        pytest.param(
            HmacConfig(HKEY, signature_prefix="v1="),
            {"x-signature": "v1=" + SIG_TS_BODY},
            True,
            id="prefix-v1=",
        ),
        pytest.param(
            HmacConfig(HKEY, signature_prefix="v1="),
            {"x-signature": "sha256=" + SIG_TS_BODY},
            False,
            id="other-prefix",
        ),
        pytest.param(
            HmacConfig(HKEY, signature_prefix="v1,"),
            {"x-signature": f"v1,{'0' * 64} v1,{SIG_TS_BODY}"},
            True,
            id="list-second-matches",
        ),
        pytest.param(
            HmacConfig(HKEY, signature_prefix="v1,"),
            {"x-signature": f"v0,{SIG_TS_BODY} v1,{'0' * 64}"},
            False,
            id="list-right-sig-wrong-prefix",
        ),
        pytest.param(
            HmacConfig(HKEY, signature_prefix="v1,"),
            {"x-signature": f"v1,{SIG_TS_BODY}x"},
            False,
            id="list-no-partial",
        ),
        pytest.param(
            HmacConfig(HKEY, include_timestamp=False), {"x-signature": SIG_BODY}, True, id="no-timestamp"
        ),
        pytest.param(
            HmacConfig(HKEY, include_timestamp=False),
            {"x-signature": SIG_TS_BODY},
            False,
            id="no-timestamp-ts-signed",
        ),
        pytest.param(
            HmacConfig(HKEY, include_timestamp=False),
            {"x-signature": SIG_BODY, "x-timestamp": "1"},
            True,
            id="no-timestamp-stale-header-ignored",
        ),
        pytest.param(HmacConfig(HKEY), {"x-signature": SIG_BODY}, False, id="timestamp-needed-by-default"),
        pytest.param(
            HmacConfig(HKEY, include_timestamp=False, payload="{method} {url} {body}"),
            {"x-signature": hsign(b"POST https://r.example/webhook/vapi " + BODY)},
            True,
            id="no-timestamp-method-url",
        ),
    ],
)
def test_hmac_options(config: HmacConfig, headers: dict[str, str], expected: bool, form: Form) -> None:
    auth = AuthConfig(hmac=config)
    verdict = verify_webhook(
        auth,
        form(headers | {"x-timestamp": TS} if config.include_timestamp else headers),
        BODY,
        now=NOW,
        url="https://r.example/webhook/vapi",
    )
    assert verdict is expected


SVIX_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SVIX_ENV = {
    "VAPI_HMAC_SECRET": SVIX_SECRET,
    "VAPI_HMAC_SECRET_IS_BASE64": "true",
    "VAPI_HMAC_HEADER": "svix-signature",
    "VAPI_HMAC_TIMESTAMP_HEADER": "svix-timestamp",
    "VAPI_HMAC_MESSAGE_ID_HEADER": "svix-id",
    "VAPI_HMAC_SIGNATURE_PREFIX": "v1,",
    "VAPI_HMAC_ENCODING": "base64",
    "VAPI_HMAC_PAYLOAD": "{svix-id}.{timestamp}.{body}",
}


def test_svix_known_answer() -> None:
    """The example in Svix's docs ("Verifying Webhooks Manually" / the svix library's tests)."""
    config = AuthConfig.from_env(SVIX_ENV)
    headers = {
        "svix-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "svix-timestamp": "1614265330",
        "svix-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    }
    body = b'{"test": 2432232314}'
    assert verify_webhook(config, headers, body, now=1614265330 + 10)
    # the same delivery again: refused, as is any change to what was signed
    assert not verify_webhook(config, headers, body, now=1614265330 + 11)
    fresh = AuthConfig.from_env(SVIX_ENV)
    assert not verify_webhook(fresh, headers | {"svix-id": "msg_other"}, body, now=1614265330)
    assert not verify_webhook(fresh, headers, body + b" ", now=1614265330)
    assert not verify_webhook(fresh, headers, body, now=1614265330 + 301)


@pytest.mark.parametrize(
    "secret",
    [
        pytest.param(SVIX_SECRET, id="whsec_"),
        pytest.param(SVIX_SECRET.removeprefix("whsec_"), id="bare-base64"),
    ],
)
def test_base64_secret_is_decoded(secret: str) -> None:
    config = AuthConfig.from_env(SVIX_ENV | {"VAPI_HMAC_SECRET": secret})
    assert config.hmac is not None
    assert config.hmac.secret == base64.b64decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")


def test_message_ids_are_remembered_for_the_window_only() -> None:
    config = AuthConfig(
        hmac=HmacConfig(HKEY, message_id_header="webhook-id", payload="{timestamp}.{svix-id}.{body}")
    )

    def headers(message_id: str, at: float) -> dict[str, str]:
        stamp = str(int(at))
        return {
            "webhook-id": message_id,
            "x-timestamp": stamp,
            "x-signature": hsign(f"{stamp}.{message_id}.".encode() + BODY),
        }

    first = headers("m-1", NOW)
    assert verify_webhook(config, first, BODY, now=NOW)
    assert not verify_webhook(config, first, BODY, now=NOW + 1)  # replayed
    assert not verify_webhook(config, first, BODY, now=NOW + 300)  # still inside its window
    assert verify_webhook(config, headers("m-2", NOW), BODY, now=NOW + 1)  # another id
    # a bad signature with a fresh id is not remembered: the real message with that id still passes
    assert not verify_webhook(config, headers("m-3", NOW) | {"x-signature": "0" * 64}, BODY, now=NOW)
    assert verify_webhook(config, headers("m-3", NOW), BODY, now=NOW)
    assert not verify_webhook(config, {k: v for k, v in first.items() if k != "webhook-id"}, BODY, now=NOW)
    assert not verify_webhook(config, first | {"webhook-id": ""}, BODY, now=NOW)
    # m-1 was signed at NOW: once NOW + 300 s has passed it fails the window, and is forgotten
    later = headers("m-1", NOW + 400)
    assert verify_webhook(config, later, BODY, now=NOW + 400)
    # the ids signed at NOW were pruned; only the new m-1 is remembered
    assert config.hmac is not None and config.hmac.seen.expiry == {b"m-1": NOW + 700}


def test_message_id_memory_is_bounded() -> None:
    seen = SeenIds(limit=3)
    for i in range(10):
        assert seen.admit(b"id-%d" % i, NOW, NOW + 300)
    assert list(seen.expiry) == [b"id-7", b"id-8", b"id-9"]
    assert not seen.admit(b"id-9", NOW, NOW + 300)
    assert seen.admit(b"id-0", NOW, NOW + 300)  # forgotten: the documented cost of the bound


def test_message_ids_without_timestamps_expire_after_the_window() -> None:
    config = AuthConfig(
        hmac=HmacConfig(
            HKEY, include_timestamp=False, message_id_header="svix-id", payload="{svix-id}.{body}"
        )
    )
    headers = {"svix-id": "m-1", "x-signature": hsign(b"m-1." + BODY)}
    assert verify_webhook(config, headers, BODY, now=NOW)
    assert not verify_webhook(config, headers, BODY, now=NOW + 299)
    assert verify_webhook(config, headers, BODY, now=NOW + 301)  # without a timestamp, nothing else stops it


# ------------------------------------------------------------------ DESIGN §10: configuration


def test_from_env_new_options() -> None:
    env = {
        "VAPI_SERVER_SECRET": "s3cret-Value",
        "VAPI_BEARER_HEADER": "X-Api-Key",
        "VAPI_BEARER_PREFIX": "FALSE",
        "VAPI_HMAC_SECRET": base64.b64encode(HKEY).decode(),
        "VAPI_HMAC_SECRET_IS_BASE64": "True",
        "VAPI_HMAC_SIGNATURE_PREFIX": "v1=",
        "VAPI_HMAC_INCLUDE_TIMESTAMP": "false",
        "VAPI_HMAC_MESSAGE_ID_HEADER": "Webhook-Id",
        "VAPI_HMAC_PAYLOAD": "{svix-id}.{body}",
    }
    expected = AuthConfig(
        secret=SECRET,
        bearer_header="x-api-key",
        bearer_prefix=False,
        hmac=HmacConfig(
            HKEY,
            signature_prefix="v1=",
            include_timestamp=False,
            message_id_header="webhook-id",
            payload="{svix-id}.{body}",
        ),
    )
    assert AuthConfig.from_env(env) == expected
    assert AuthConfig.from_env(
        {"VAPI_HMAC_SECRET": "k", "VAPI_HMAC_INCLUDE_TIMESTAMP": "false"}
    ).hmac == HmacConfig(b"k", include_timestamp=False, payload="{body}")


NOT_BASE64 = "VAPI_HMAC_SECRET is not valid base64 (VAPI_HMAC_SECRET_IS_BASE64 is true)"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        pytest.param(
            {"VAPI_BEARER_PREFIX": "TOPSECRET"},
            "VAPI_BEARER_PREFIX must be true or false",
            id="prefix-not-bool",
        ),
        pytest.param(
            {"VAPI_BEARER_HEADER": "X Api Key"},
            "VAPI_BEARER_HEADER must be an HTTP header name",
            id="header-space",
        ),
        pytest.param(
            {"VAPI_HMAC_HEADER": "x-sig:"},
            "VAPI_HMAC_HEADER must be an HTTP header name",
            id="hmac-header-colon",
        ),
        pytest.param(
            {"VAPI_HMAC_MESSAGE_ID_HEADER": "svix id", "VAPI_HMAC_PAYLOAD": "{svix-id}.{timestamp}.{body}"},
            "VAPI_HMAC_MESSAGE_ID_HEADER must be an HTTP header name",
            id="id-header-space",
        ),
        pytest.param(
            {"VAPI_HMAC_SECRET_IS_BASE64": "yes"},
            "VAPI_HMAC_SECRET_IS_BASE64 must be true or false",
            id="b64-flag",
        ),
        pytest.param(
            {"VAPI_HMAC_INCLUDE_TIMESTAMP": "0"},
            "VAPI_HMAC_INCLUDE_TIMESTAMP must be true or false",
            id="ts-flag",
        ),
        pytest.param({"VAPI_HMAC_SECRET_IS_BASE64": "true"}, NOT_BASE64, id="secret-not-base64"),
        pytest.param(
            {"VAPI_HMAC_SECRET": "whsec_TOPSECRET!!", "VAPI_HMAC_SECRET_IS_BASE64": "true"},
            NOT_BASE64,
            id="whsec-not-base64",
        ),
        pytest.param(
            {"VAPI_HMAC_SECRET": "TOPSECRET=", "VAPI_HMAC_SECRET_IS_BASE64": "true"},
            NOT_BASE64,
            id="bad-padding",
        ),
        pytest.param(
            {"VAPI_HMAC_SECRET": "whsec_", "VAPI_HMAC_SECRET_IS_BASE64": "true"},
            "VAPI_HMAC_SECRET must not be empty",
            id="empty-key",
        ),
        pytest.param(
            {"VAPI_HMAC_INCLUDE_TIMESTAMP": "false", "VAPI_HMAC_PAYLOAD": "{timestamp}.{body}"},
            "VAPI_HMAC_PAYLOAD uses {timestamp} but VAPI_HMAC_INCLUDE_TIMESTAMP is false",
            id="timestamp-off-but-signed",
        ),
        pytest.param(
            {"VAPI_HMAC_INCLUDE_TIMESTAMP": "false", "VAPI_HMAC_PAYLOAD": "{method}"},
            "VAPI_HMAC_PAYLOAD must include {body}",
            id="timestamp-off-body-not-signed",
        ),
        pytest.param(
            {"VAPI_HMAC_MESSAGE_ID_HEADER": "svix-id"},
            "VAPI_HMAC_MESSAGE_ID_HEADER is set but VAPI_HMAC_PAYLOAD does not sign {svix-id}: "
            "an unsigned id could be changed to replay a request",
            id="id-header-unsigned",
        ),
    ],
)
def test_from_env_errors_new_options(env: dict[str, str], message: str) -> None:
    full = {"VAPI_SERVER_SECRET": "TOPSECRET", "VAPI_HMAC_SECRET": "TOPSECRET-hmac"} | env
    with pytest.raises(AuthConfigError) as caught:
        AuthConfig.from_env(full)
    assert str(caught.value) == message
    assert "TOPSECRET" not in str(caught.value)


def test_bearer_options_without_the_secret() -> None:
    with pytest.raises(AuthConfigError) as caught:
        AuthConfig.from_env({"VAPI_BEARER_HEADER": "X-Api-Key", "VAPI_BEARER_PREFIX": "false"})
    message = (
        "VAPI_BEARER_HEADER, VAPI_BEARER_PREFIX set but VAPI_SERVER_SECRET is not: "
        "the Bearer scheme would be off"
    )
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        pytest.param(
            AuthConfig(secret=SECRET, bearer_header="X-Vapi-Secret", bearer_prefix=False),
            "x-vapi-secret",
            id="x-vapi-secret-raw",
        ),
        pytest.param(
            AuthConfig(secret=SECRET, bearer_header="X-Api-Key"), "x-vapi-secret/x-api-key", id="custom"
        ),
        pytest.param(
            AuthConfig(secret=SECRET, bearer_header="Authorization", bearer_prefix=False),
            "x-vapi-secret/authorization (raw)",
            id="raw-authorization",
        ),
        pytest.param(
            AuthConfig(secret=SECRET, oauth=ISSUER, hmac=HmacConfig(HKEY)),
            "x-vapi-secret/Bearer, HMAC sha256 hex in x-signature, OAuth2 tokens from POST /oauth/token",
            id="with-oauth2",
        ),
    ],
)
def test_describe_bearer_options(config: AuthConfig, expected: str) -> None:
    assert config.describe() == expected


# ------------------------------------------------------------------ router_auth_failures_total{scheme}

JWT_SHAPED = "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"


@pytest.mark.parametrize(
    ("config", "headers", "expected"),
    [
        pytest.param(AuthConfig(secret=SECRET), {}, "none", id="nothing"),
        pytest.param(
            AuthConfig(secret=SECRET), {"x-signature": "ab"}, "none", id="unconfigured-scheme's-header"
        ),
        pytest.param(AuthConfig(secret=SECRET), {"x-vapi-secret": "no"}, "bearer", id="x-vapi-secret"),
        pytest.param(AuthConfig(secret=SECRET), {"authorization": "Bearer no"}, "bearer", id="authorization"),
        pytest.param(
            AuthConfig(secret=SECRET, bearer_header="X-Api-Key"),
            {"x-api-key": "no"},
            "bearer",
            id="custom-header",
        ),
        pytest.param(SIGNED, {"x-signature": "ab", "x-timestamp": TS}, "hmac", id="hmac"),
        pytest.param(
            AuthConfig(secret=SECRET, hmac=HmacConfig(HKEY)),
            {"x-signature": "ab", "x-vapi-secret": "no"},
            "bearer+hmac",
            id="two",
        ),
        pytest.param(
            AuthConfig(secret=SECRET, oauth=ISSUER),
            {"authorization": JWT_SHAPED},
            "oauth2",
            id="jwt-is-oauth2",
        ),
        pytest.param(
            AuthConfig(secret=SECRET, oauth=ISSUER),
            {"authorization": "Bearer no"},
            "bearer",
            id="plain-token-is-bearer",
        ),
        pytest.param(
            AuthConfig(oauth=ISSUER), {"authorization": "Bearer no"}, "oauth2", id="only-oauth2-reads-it"
        ),
        pytest.param(
            AuthConfig(secret=SECRET, bearer_header="X-Api-Key", oauth=ISSUER),
            {"authorization": "Bearer no"},
            "oauth2",
            id="bearer-elsewhere",
        ),
        pytest.param(
            AuthConfig(secret=SECRET, oauth=ISSUER),
            {"authorization": JWT_SHAPED, "x-vapi-secret": "n"},
            "bearer+oauth2",
            id="both",
        ),
        pytest.param(
            AuthConfig(oauth=ISSUER), {"authorization": "Basic eA=="}, "none", id="basic-is-no-token"
        ),
    ],
)
def test_refused_scheme(config: AuthConfig, headers: dict[str, str], expected: str, form: Form) -> None:
    assert verify_webhook(config, form(headers), BODY, now=NOW) is False
    assert refused_scheme(config, form(headers)) == expected
