"""Signing in to the console with the organisation's identity provider, as a browser goes through it.

A real OpenID provider on 127.0.0.1 (`OidcProvider`) shows its sign-in form, issues one-time
codes bound to a PKCE challenge, and signs ID tokens. The console's two sign-in routes are a tiny
Starlette app here, calling `ConsoleSignIn.begin` and `finish` as the console's own routes do;
`Browser` reaches the app in process and the provider over HTTP, keeps cookies, follows
redirects and submits forms. Every refusal is checked by the text a person would read.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit, urlunsplit

import httpx
import pytest
from joserfc.jwk import RSAKey
from pydantic import SecretStr, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from gateway.console.oidc import COOKIE_NAME, ConsoleSignIn, console_path
from gateway.errors import AuthenticationFailed, ConfigError
from gateway.identity.people import PeopleAuthenticator
from gateway.identity.users import UserStore
from gateway.settings.auth import AuthSettings, IssuerSettings, PeopleSettings
from gateway.settings.console_oidc import ConsoleOidcSettings
from gateway.storage import Database
from local_issuer import AUDIENCE as AGENTS
from local_issuer import Clock
from oidc_provider import OidcProvider, query_of

pytestmark = pytest.mark.anyio

#: The console as the provider knows it: one of people's audiences, apart from the approvals API's.
CONSOLE = "gateway-console"
APPROVALS = "gateway-approvals"
GATEWAY = "http://localhost"
CALLBACK = GATEWAY + "/ui/auth/callback"
PEOPLE = {"maria": ("correct horse battery", ("approvers", "finance")), "bob": ("hunter2 hunter2", ())}


@pytest.fixture(scope="module")
def rsa_key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": "provider-1", "use": "sig"})


@pytest.fixture
def provider(rsa_key: RSAKey) -> Iterator[OidcProvider]:
    server = OidcProvider(PEOPLE, key=rsa_key)
    server.register(CONSOLE, CALLBACK, "https://gateway.example/ui/auth/callback")
    yield server
    server.stop()


def auth_settings(provider: OidcProvider) -> AuthSettings:
    """One provider for agents and people, as one Keycloak realm serves both; people's roles are their groups."""
    return AuthSettings(
        issuers=(IssuerSettings(issuer=provider.url, audiences=(AGENTS,), user_claim="preferred_username"),),
        people=PeopleSettings(
            issuer=provider.url,
            audiences=(APPROVALS, CONSOLE),
            user_claim="preferred_username",
            roles_claims=("groups",),
        ),
    )


@pytest.fixture
async def users(tmp_path: Path) -> AsyncIterator[UserStore]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}")
    await database.migrate()
    try:
        yield UserStore(database)
    finally:
        await database.close()


@pytest.fixture
async def authenticator(provider: OidcProvider, users: UserStore) -> AsyncIterator[PeopleAuthenticator]:
    people = PeopleAuthenticator(users, auth_settings(provider))
    yield people
    await people.aclose()


class Console:
    """Makes `ConsoleSignIn`s on the provider, closing them after the test."""

    def __init__(self, provider: OidcProvider, authenticator: PeopleAuthenticator) -> None:
        self.provider = provider
        self.authenticator = authenticator
        self.made: list[ConsoleSignIn] = []

    def sign_in(self, **options: Any) -> ConsoleSignIn:
        settings = ConsoleOidcSettings(client_id=CONSOLE, client_secret=options.pop("client_secret", None))
        people = auth_settings(self.provider).people
        assert people is not None
        made = ConsoleSignIn(settings, people, self.authenticator, **options)
        self.made.append(made)
        return made


@pytest.fixture
async def console(provider: OidcProvider, authenticator: PeopleAuthenticator) -> AsyncIterator[Console]:
    made = Console(provider, authenticator)
    yield made
    for sign_in in made.made:
        await sign_in.aclose()


def console_app(begins: ConsoleSignIn, finishes: ConsoleSignIn | None = None) -> Starlette:
    """The console's two sign-in routes; the callback shows who signed in, or why nobody did."""
    finishes = finishes or begins

    async def login(request: Request) -> Response:
        try:
            return await begins.begin(request, request.query_params.get("return_to", "/ui"))
        except AuthenticationFailed as error:
            return PlainTextResponse(str(error), status_code=401)

    async def callback(request: Request) -> Response:
        try:
            user, return_to = await finishes.finish(request)
        except AuthenticationFailed as error:
            response: Response = PlainTextResponse(str(error), status_code=401)
        else:
            response = JSONResponse({"name": user.name, "roles": list(user.roles), "return_to": return_to})
        finishes.forget(response)
        return response

    return Starlette(routes=[Route("/ui/auth/login", login), Route("/ui/auth/callback", callback)])


class _Form(HTMLParser):
    """The first form of a page: where it posts, and the values its inputs carry."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}
        self.ids: set[str] = set()
        self.buttons: list[str] = []
        self._in_button = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "form" and self.action is None:
            self.action = attributes.get("action", "")
        elif tag == "input":
            self.ids.add(attributes.get("id", ""))
            if attributes.get("type") == "hidden":
                self.fields[attributes["name"]] = attributes.get("value", "")
        elif tag == "button":
            self._in_button = True

    def handle_data(self, data: str) -> None:
        if self._in_button and data.strip():
            self.buttons.append(data.strip())

    def handle_endtag(self, tag: str) -> None:
        if tag == "button":
            self._in_button = False


class Browser:
    """A browser as far as signing in needs one: it keeps cookies, follows redirects and submits forms.

    Requests to the gateway (`http://localhost`, `https://gateway.example`) reach `app` in process;
    requests to the provider go over HTTP to 127.0.0.1.
    """

    def __init__(self, app: Starlette) -> None:
        gateway = httpx.ASGITransport(app=app)
        self.http = httpx.AsyncClient(
            mounts={"all://localhost": gateway, "all://gateway.example": gateway}, follow_redirects=True, timeout=10
        )

    async def open(self, url: str, *, follow: bool = True) -> httpx.Response:
        return await self.http.get(url, follow_redirects=follow)

    async def sign_in(
        self, page: httpx.Response, username: str, password: str, *, follow: bool = True
    ) -> httpx.Response:
        """Fill in the provider's form on `page` and press "Sign in"."""
        return await self.submit(page, {"username": username, "password": password, "action": "sign_in"}, follow)

    async def cancel(self, page: httpx.Response) -> httpx.Response:
        return await self.submit(page, {"action": "cancel"}, True)

    async def submit(self, page: httpx.Response, fields: dict[str, str], follow: bool) -> httpx.Response:
        form = _Form()
        form.feed(page.text)
        assert form.action is not None, f"no form on {page.url}: {page.text[:300]}"
        action = urljoin(str(page.url), form.action)
        return await self.http.post(action, data={**form.fields, **fields}, follow_redirects=follow)

    async def start(self, return_to: str = "/ui", *, gateway: str = GATEWAY) -> httpx.Response:
        """Press the console's sign-in button: the provider's form, once the redirects are followed."""
        return await self.open(f"{gateway}/ui/auth/login?" + urlencode({"return_to": return_to}))

    async def aclose(self) -> None:
        await self.http.aclose()


@pytest.fixture
async def browsers() -> AsyncIterator[list[Browser]]:
    made: list[Browser] = []
    yield made
    for browser in made:
        await browser.aclose()


def browser_for(browsers: list[Browser], app: Starlette) -> Browser:
    browser = Browser(app)
    browsers.append(browser)
    return browser


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(query=urlencode({**query_of(url), **changes})))


def signed_in(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def refused(response: httpx.Response) -> str:
    assert response.status_code == 401, response.text
    return response.text


# -- signing in ----------------------------------------------------------------------------------


async def test_a_person_signs_in_at_the_provider_and_comes_back_with_their_roles(
    console: Console, browsers: list[Browser], provider: OidcProvider
) -> None:
    browser = browser_for(browsers, console_app(console.sign_in()))

    page = await browser.start("/ui/approvals?state=pending")
    assert str(page.url).startswith(provider.url + "/authorize?")
    form = _Form()
    form.feed(page.text)
    assert {"username", "password"} <= form.ids and form.buttons[0] == "Sign in"

    answer = await browser.sign_in(page, "maria", "correct horse battery")

    assert signed_in(answer) == {
        "name": "maria",
        "roles": ["approvers", "finance"],
        "return_to": "/ui/approvals?state=pending",
    }
    assert COOKIE_NAME not in browser.http.cookies, "the finished sign-in's cookie is cleared"
    # The password went to the provider only; the gateway got a code and redeemed it itself.
    assert [(hop.request.method, str(hop.request.url)) for hop in answer.history] == [
        ("POST", provider.url + "/authorize")
    ]


async def test_a_wrong_password_keeps_the_person_at_the_provider(console: Console, browsers: list[Browser]) -> None:
    browser = browser_for(browsers, console_app(console.sign_in()))

    again = await browser.sign_in(await browser.start(), "maria", "wrong password")

    assert "Wrong username or password." in again.text
    assert signed_in(await browser.sign_in(again, "maria", "correct horse battery"))["name"] == "maria"


async def test_the_sign_in_cookie_is_sealed_short_lived_and_kept_from_scripts_and_other_sites(
    console: Console, browsers: list[Browser], provider: OidcProvider
) -> None:
    browser = browser_for(browsers, console_app(console.sign_in()))

    local = await browser.open(GATEWAY + "/ui/auth/login", follow=False)
    public = await browser.open("https://gateway.example/ui/auth/login", follow=False)

    for response in (local, public):
        assert response.status_code == 302
        request = query_of(response.headers["location"])
        assert request["code_challenge_method"] == "S256" and request["code_challenge"]
        assert request["state"] not in response.headers["set-cookie"], "the cookie does not show what it holds"
        attributes = [part.strip().lower() for part in response.headers["set-cookie"].split(";")]
        assert {"httponly", "samesite=lax", "max-age=600", "path=/"} <= set(attributes)
    assert query_of(local.headers["location"])["redirect_uri"] == CALLBACK
    assert "secure" not in local.headers["set-cookie"].lower(), "plain http works on localhost"
    assert query_of(public.headers["location"])["redirect_uri"] == "https://gateway.example/ui/auth/callback"
    assert "secure" in [part.strip().lower() for part in public.headers["set-cookie"].split(";")]


async def test_the_providers_endpoints_are_discovered_once(
    console: Console, browsers: list[Browser], provider: OidcProvider
) -> None:
    browser = browser_for(browsers, console_app(console.sign_in()))

    for _ in range(2):
        signed_in(await browser.sign_in(await browser.start(), "bob", "hunter2 hunter2"))

    assert provider.hits["/.well-known/openid-configuration"] == 2, "once by the console, once for the keys"


async def test_a_confidential_client_signs_in_with_its_secret_and_a_wrong_secret_is_the_administrators_problem(
    console: Console, browsers: list[Browser], provider: OidcProvider
) -> None:
    provider.register(CONSOLE, CALLBACK, secret="s3cret-of-the-console")
    good = browser_for(browsers, console_app(console.sign_in(client_secret=SecretStr("s3cret-of-the-console"))))
    wrong = browser_for(browsers, console_app(console.sign_in(client_secret=SecretStr("an-old-secret"))))

    assert signed_in(await good.sign_in(await good.start(), "maria", "correct horse battery"))["name"] == "maria"
    message = refused(await wrong.sign_in(await wrong.start(), "maria", "correct horse battery"))

    assert message == (
        "the identity provider does not accept this gateway's console as a client (invalid_client: Client "
        "authentication failed.); ask the gateway's administrator to check [console.oidc] client_id and client_secret"
    )


async def test_a_person_is_told_to_try_later_while_the_provider_is_down(
    console: Console, browsers: list[Browser], provider: OidcProvider
) -> None:
    browser = browser_for(browsers, console_app(console.sign_in()))
    provider.stop()

    message = refused(await browser.start())

    assert message == "the identity provider could not be reached to sign you in; try again later"


async def test_a_console_served_over_plain_http_says_why_sign_in_cannot_work(
    console: Console, browsers: list[Browser], provider: OidcProvider
) -> None:
    provider.register(CONSOLE, "http://gateway.example/ui/auth/callback")
    browser = browser_for(browsers, console_app(console.sign_in()))

    page = await browser.start(gateway="http://gateway.example")
    message = refused(await browser.sign_in(page, "maria", "correct horse battery"))

    assert message == (
        "sign-in took too long or was started elsewhere; start again "
        "(the console must be served over https for sign-in to work)"
    )


# -- what comes back must belong to this sign-in -------------------------------------------------


async def test_a_code_issued_to_another_sign_in_is_refused_because_the_pkce_verifier_is_checked(
    console: Console, browsers: list[Browser]
) -> None:
    """A code injected into a sign-in it was not issued for: the state is right, the verifier is not."""
    browser = browser_for(browsers, console_app(console.sign_in()))
    first = await browser.sign_in(await browser.start(), "maria", "correct horse battery", follow=False)
    code = query_of(first.headers["location"])["code"]
    second = await browser.sign_in(await browser.start(), "maria", "correct horse battery", follow=False)

    message = refused(await browser.open(with_query(second.headers["location"], code=code)))

    assert message == (
        "the identity provider refused the sign-in code: it was already used, has expired, or belongs to another "
        "sign-in (invalid_grant: PKCE code_verifier does not match the code_challenge.); start again"
    )
    assert code not in message


@pytest.mark.parametrize("state", ["state-of-the-attacker", ""], ids=["another-state", "no-state"])
async def test_an_answer_for_another_sign_in_is_refused_by_its_state(
    console: Console, browsers: list[Browser], state: str
) -> None:
    browser = browser_for(browsers, console_app(console.sign_in()))
    back = await browser.sign_in(await browser.start(), "maria", "correct horse battery", follow=False)

    message = refused(await browser.open(with_query(back.headers["location"], state=state)))

    assert message == (
        "this answer from the identity provider is not for the sign-in started in this browser "
        "(its state does not match); start again"
    )
    assert COOKIE_NAME not in browser.http.cookies, "a refused sign-in is over too"


async def test_an_answer_naming_another_provider_is_refused(
    console: Console, browsers: list[Browser], provider: OidcProvider
) -> None:
    """A mix-up: the answer says another provider sent it (RFC 9207), so its code is never sent to this one."""
    browser = browser_for(browsers, console_app(console.sign_in()))
    back = await browser.sign_in(await browser.start(), "maria", "correct horse battery", follow=False)

    message = refused(await browser.open(with_query(back.headers["location"], iss="https://other-idp.example")))

    assert message == (
        "this answer comes from the identity provider 'https://other-idp.example', not the one this gateway signs "
        "people in with; start again"
    )
    assert provider.hits["/token"] == 0


async def test_an_answer_in_a_browser_that_started_no_sign_in_is_refused(
    console: Console, browsers: list[Browser]
) -> None:
    app = console_app(console.sign_in())
    victim, attacker = browser_for(browsers, app), browser_for(browsers, app)
    back = await attacker.sign_in(await attacker.start(), "bob", "hunter2 hunter2", follow=False)

    message = refused(await victim.open(back.headers["location"]))

    assert message == "sign-in took too long or was started elsewhere; start again"


async def test_a_replayed_code_is_refused(console: Console, browsers: list[Browser]) -> None:
    browser = browser_for(browsers, console_app(console.sign_in()))
    back = await browser.sign_in(await browser.start(), "maria", "correct horse battery", follow=False)
    cookie = browser.http.cookies[COOKIE_NAME]
    callback = back.headers["location"]
    assert signed_in(await browser.open(callback))["name"] == "maria"

    reloaded = refused(await browser.open(callback))
    # Someone who copied both the answer and the cookie replays them.
    replayed = refused(await browser.http.get(callback, headers={"Cookie": f"{COOKIE_NAME}={cookie}"}))

    assert reloaded == "sign-in took too long or was started elsewhere; start again"
    assert replayed == (
        "the identity provider refused the sign-in code: it was already used, has expired, or belongs to another "
        "sign-in (invalid_grant: The code is unknown or was already used.); start again"
    )


async def test_a_person_who_cancels_at_the_provider_is_told_so(console: Console, browsers: list[Browser]) -> None:
    browser = browser_for(browsers, console_app(console.sign_in()))

    message = refused(await browser.cancel(await browser.start()))

    assert message == (
        "the sign-in was cancelled, or the identity provider refused it (access_denied: The person cancelled the "
        "sign-in.); start again to sign in"
    )


async def test_a_sign_in_not_finished_within_ten_minutes_is_started_again(
    console: Console, browsers: list[Browser]
) -> None:
    clock = Clock()
    browser = browser_for(browsers, console_app(console.sign_in(clock=clock)))
    page = await browser.start()
    clock.advance(601)

    message = refused(await browser.sign_in(page, "maria", "correct horse battery"))

    assert message == "sign-in took too long or was started elsewhere; start again"


@pytest.mark.parametrize("shared", [True, False], ids=["shared-session-keys", "a-key-per-process"])
async def test_a_sign_in_finishes_in_another_process_when_they_share_session_keys(
    console: Console, browsers: list[Browser], shared: bool
) -> None:
    secrets = ("the-session-key-every-replica-shares-0123456789",) if shared else ()
    one, other = console.sign_in(cookie_secrets=secrets), console.sign_in(cookie_secrets=secrets)
    browser = browser_for(browsers, console_app(begins=one, finishes=other))

    answer = await browser.sign_in(await browser.start(), "maria", "correct horse battery")

    if shared:
        assert signed_in(answer)["name"] == "maria"
    else:
        assert refused(answer) == "sign-in took too long or was started elsewhere; start again"


# -- the ID token must be a person's, for this console, for this sign-in -------------------------


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        pytest.param(
            {"aud": "reporting-app", "azp": "reporting-app"},
            "the identity provider's ID token was refused: token audience is not this gateway's sign-in for people: "
            "ask the identity provider for a token issued for gateway-approvals or gateway-console",
            id="another-application",
        ),
        pytest.param(
            {"aud": AGENTS, "azp": "billing-agent"},
            "the identity provider's ID token was refused: this token identifies an agent, not a person",
            id="an-agents-token",
        ),
        pytest.param(
            {"aud": APPROVALS, "azp": APPROVALS},
            "the identity provider's ID token was issued to another client, not this gateway's console "
            "('gateway-console'); start again",
            id="the-approvals-clients-token",
        ),
    ],
)
async def test_an_id_token_for_anyone_but_the_console_is_refused(
    console: Console, browsers: list[Browser], provider: OidcProvider, claims: dict[str, Any], message: str
) -> None:
    provider.id_token_claims = claims
    browser = browser_for(browsers, console_app(console.sign_in()))

    assert refused(await browser.sign_in(await browser.start(), "maria", "correct horse battery")).startswith(message)


async def test_an_expired_id_token_is_refused(
    console: Console, browsers: list[Browser], provider: OidcProvider
) -> None:
    now = int(provider.clock())
    provider.id_token_claims = {"iat": now - 900, "exp": now - 300}
    browser = browser_for(browsers, console_app(console.sign_in()))

    message = refused(await browser.sign_in(await browser.start(), "maria", "correct horse battery"))

    assert message == "the identity provider's ID token was refused: token expired"


@pytest.mark.parametrize("nonce", ["the-nonce-of-another-sign-in", None], ids=["another-nonce", "no-nonce"])
async def test_an_id_token_issued_for_another_sign_in_is_refused_by_its_nonce(
    console: Console, browsers: list[Browser], provider: OidcProvider, nonce: str | None
) -> None:
    provider.id_token_claims = {"nonce": nonce}
    browser = browser_for(browsers, console_app(console.sign_in()))

    message = refused(await browser.sign_in(await browser.start(), "maria", "correct horse battery"))

    assert message == (
        "the identity provider's ID token was not issued for this sign-in (its nonce does not match); start again"
    )


# -- where a person goes afterwards --------------------------------------------------------------


async def test_a_return_to_outside_the_console_is_ignored(console: Console, browsers: list[Browser]) -> None:
    browser = browser_for(browsers, console_app(console.sign_in()))

    answer = await browser.sign_in(await browser.start("https://evil.example/ui"), "maria", "correct horse battery")

    assert signed_in(answer)["return_to"] == "/ui"


@pytest.mark.parametrize(
    "outside",
    [
        "https://evil.example/ui/approvals",
        "//evil.example/ui",
        "/\\evil.example/ui",
        "/api/v1/approvals",
        "/uix",
        "/ui/../api/v1/approvals",
        "/ui/%2e%2e/api/v1/approvals",
        "/ui/approvals\r\nSet-Cookie: x=1",
        "",
    ],
)
def test_only_paths_of_the_console_are_returned_to(outside: str) -> None:
    assert console_path(outside) == "/ui"


@pytest.mark.parametrize("inside", ["/ui", "/ui/", "/ui/approvals/apr_1?tab=votes", "/ui/audit?q=a%2Fb"])
def test_paths_of_the_console_are_returned_to_as_they_are(inside: str) -> None:
    assert console_path(inside) == inside


# -- configuration -------------------------------------------------------------------------------


async def test_a_console_client_that_is_not_one_of_peoples_audiences_is_refused_at_start(
    provider: OidcProvider, authenticator: PeopleAuthenticator
) -> None:
    people = PeopleSettings(issuer=provider.url, audiences=(APPROVALS,), user_claim="preferred_username")

    with pytest.raises(ConfigError) as refusal:
        ConsoleSignIn(ConsoleOidcSettings(client_id=CONSOLE), people, authenticator)

    assert str(refusal.value) == (
        "[console.oidc] client_id 'gateway-console' is not one of [auth.people] audiences (gateway-approvals): the "
        "console's ID tokens name its client id as their audience, so add 'gateway-console' to [auth.people] audiences"
    )


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"scopes": ["profile", "email"]}, "scopes must include 'openid': without it the provider returns no ID token"),
        (
            {"redirect_url": "http://gateway.example/ui/auth/callback"},
            "must be an https:// URL (plain http is accepted only for localhost), because the sign-in code travels",
        ),
    ],
)
def test_settings_that_could_not_sign_anyone_in_safely_are_refused(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as refusal:
        ConsoleOidcSettings(client_id=CONSOLE, **settings)

    assert message in str(refusal.value)


def test_the_settings_default_to_a_public_client_asking_for_who_signed_in() -> None:
    settings = ConsoleOidcSettings(client_id=CONSOLE)

    assert settings.client_secret is None
    assert settings.scopes == ("openid", "profile", "email")
    assert settings.redirect_url is None
    assert settings.label == "Sign in with your identity provider"
