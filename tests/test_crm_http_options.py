"""HTTP CRM options for real CRMs (DESIGN §12): method and body, found, tags_split,
number_format, and oauth2 with the token cached, refreshed before expiry, and a failing or
hanging token endpoint counted as a CRM error within the deadline."""

from __future__ import annotations

import asyncio
import json
import time

import httpx

from router.crm.clients import HttpCrm
from router.crm.httpparts import format_number

SEARCH = "https://api.crm.test/crm/v3/objects/contacts/search"
BODY = '{"filterGroups":[{"filters":[{"propertyName":"phone","operator":"EQ","value":"${caller}"}]}]}'


def hubspot(request: httpx.Request) -> httpx.Response:
    """A HubSpot-style search: POST, 200 with an empty `results` list when nobody matches."""
    wanted = json.loads(request.content)["filterGroups"][0]["filters"][0]["value"]
    results = []
    if wanted == "14155550101":
        results = [{"properties": {"tier": "gold", "tags": "vip; gold", "firstname": "Ada"}}]
    return httpx.Response(200, json={"total": len(results), "results": results})


def test_post_body_found_tags_split_and_digits() -> None:
    async def run() -> None:
        seen: list[httpx.Request] = []

        def handler(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            return hubspot(request)

        async with HttpCrm(
            url=SEARCH,
            method="POST",
            body=BODY,
            found="results.0",
            tags="results.0.properties.tags",
            tags_split=";",
            fields={"tier": "results.0.properties.tier", "name": "results.0.properties.firstname"},
            number_format="digits",
            transport=httpx.MockTransport(handler),
        ) as crm:
            ada = await crm.lookup("+14155550101")
            assert (ada.status, ada.tags, dict(ada.fields)) == (
                "ok",
                {"vip", "gold"},
                {"tier": "gold", "name": "Ada"},
            )
            assert (await crm.lookup("+14155550102")).status == "not_found"  # 200, empty list
        assert seen[0].method == "POST"
        assert seen[0].headers["content-type"] == "application/json"
        assert b'"value":"14155550101"' in seen[0].content

    asyncio.run(run())


def test_number_formats() -> None:
    assert format_number("+14155550101", "e164") == "+14155550101"
    assert format_number("+14155550101", "digits") == "14155550101"
    assert format_number("+14155550101", "national") == "(415) 555-0101"
    assert format_number("+442079460000", "national") == "020 7946 0000"


TOKEN_URL = "https://auth.crm.test/oauth/token"


class Tokens:
    """An OAuth2 token endpoint and an API that checks the bearer token."""

    def __init__(self, mode: str = "ok", expires_in: int = 3600) -> None:
        self.mode = mode
        self.expires_in = expires_in
        self.issued = 0
        self.forms: list[str] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        if str(request.url) == TOKEN_URL:
            self.forms.append(request.content.decode())
            if self.mode == "hang":
                await asyncio.sleep(30)
            if self.mode == "500":
                return httpx.Response(500)
            self.issued += 1
            return httpx.Response(
                200, json={"access_token": f"t{self.issued}", "expires_in": self.expires_in}
            )
        if request.headers.get("authorization") != f"Bearer t{self.issued}":
            return httpx.Response(401)
        return httpx.Response(200, json={"records": [{"fields": {"Tier": "gold"}}]})


def oauth_crm(tokens: Tokens, clock: list[float], timeout_ms: int = 300) -> HttpCrm:
    return HttpCrm(
        url="https://api.crm.test/v0/base/Customers?filterByFormula={Phone}='${caller}'",
        found="records",
        fields={"tier": "records.0.fields.Tier"},
        cache_ttl_s=0,
        timeout_ms=timeout_ms,
        oauth2={
            "token_url": TOKEN_URL,
            "client_id": "router",
            "client_secret": "${env.SECRET}",
            "scope": "read",
        },
        env={"SECRET": "sh-secret"},
        transport=httpx.MockTransport(tokens),
        clock=lambda: clock[0],
    )


def test_oauth2_token_cached_and_refreshed_before_expiry() -> None:
    async def run() -> None:
        tokens, clock = Tokens(expires_in=600), [0.0]
        async with oauth_crm(tokens, clock) as crm:
            records = await asyncio.gather(*(crm.lookup(f"+1415555010{i}") for i in range(5)))
            assert {r.status for r in records} == {"ok"} and tokens.issued == 1  # single-flight
            assert tokens.forms[0] == (
                "grant_type=client_credentials&client_id=router&client_secret=sh-secret&scope=read"
            )
            clock[0] = 539.0  # 600 s less a 60 s margin: not yet
            assert (await crm.lookup("+14155550101")).status == "ok" and tokens.issued == 1
            clock[0] = 541.0  # within the margin: a new token before the old one expires
            assert (await crm.lookup("+14155550101")).status == "ok" and tokens.issued == 2
            tokens.issued += 1  # the server rotated it early: 401 once, then a new token
            assert (await crm.lookup("+14155550101")).status == "error"
            assert (await crm.lookup("+14155550101")).status == "ok"

    asyncio.run(run())


def test_a_token_endpoint_that_fails_or_hangs_is_an_error_within_the_deadline() -> None:
    async def run() -> None:
        for mode, reason in (
            ("500", "OAuth2 token endpoint: HTTP 500"),
            ("hang", "OAuth2 token endpoint did not answer in time"),
        ):
            async with oauth_crm(Tokens(mode), [0.0], timeout_ms=200) as crm:
                start = time.perf_counter()
                record = await crm.lookup("+14155550101")
                assert (record.status, record.reason) == ("error", reason)
                assert time.perf_counter() - start < 0.3

    asyncio.run(run())
