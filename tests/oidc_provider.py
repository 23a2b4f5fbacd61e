"""A real OpenID provider for tests: people sign in on its HTML form, clients redeem one-time codes with PKCE.

It runs on a free port of 127.0.0.1 in a thread and speaks the authorization code flow as a
strict provider does (OpenID Connect Core 1.0, RFC 6749, RFC 7636, RFC 9207):

- `/.well-known/openid-configuration` and `/jwks`;
- `GET /authorize` checks the client, its registered redirect URI, `response_type=code`, the
  `openid` scope and a PKCE `code_challenge` with `code_challenge_method=S256`, then shows a
  plain HTML form (`id="username"`, `id="password"`, a "Sign in" button, and "Cancel"), which a
  headless browser can fill as a person would;
- `POST /authorize` signs a known person in and sends the browser to
  `redirect_uri?code=...&state=...&iss=...`, or back with `error=access_denied` on "Cancel";
- `POST /token` authenticates the client (HTTP Basic, a secret in the body, or none for a public
  client), takes each code once, checks that it was issued to that client for that redirect URI,
  and that the `code_verifier` hashes to its challenge, then answers with an ID token signed
  RS256 naming the person (`sub`, `preferred_username`) and their roles (`groups` and `roles`).

A test makes the provider misbehave by setting `id_token_claims`, merged into every ID token it
issues (a value of None removes that claim).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import secrets
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

import httpx
from joserfc import jwt
from joserfc.jwk import RSAKey

from harness import wait_until
from local_issuer import Clock

#: The fields the sign-in form carries from the authorization request to its submission.
_REQUEST_FIELDS = (
    "client_id",
    "redirect_uri",
    "response_type",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
)
_VERIFIER_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


@dataclass(frozen=True)
class Account:
    """A person the provider knows."""

    password: str
    roles: tuple[str, ...]


@dataclass(frozen=True)
class Client:
    """An OAuth client registered at the provider: where it may be sent back to, and its secret if confidential."""

    redirect_uris: tuple[str, ...]
    secret: str | None


@dataclass(frozen=True)
class Grant:
    """What a code was issued for; the code is good once, for `code_seconds`."""

    client_id: str
    redirect_uri: str
    code_challenge: str
    nonce: str | None
    username: str
    scope: str
    issued_at: float


class AuthorizationRefused(Exception):
    """The authorization request is unusable; `redirect` says whether the client's redirect URI may be told."""

    def __init__(self, error: str, description: str, *, redirect: bool) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.redirect = redirect


class TokenRefused(Exception):
    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description


class OidcProvider:
    """An OpenID provider on 127.0.0.1 for `users` (name to password and roles); register clients with `register`."""

    def __init__(
        self,
        users: Mapping[str, tuple[str, Sequence[str]]],
        *,
        key: RSAKey | None = None,
        clock: Clock | None = None,
        code_seconds: float = 60,
        token_seconds: float = 300,
    ) -> None:
        self.users = {name: Account(password, tuple(roles)) for name, (password, roles) in users.items()}
        self.key = key or RSAKey.generate_key(2048, parameters={"kid": "provider-1", "use": "sig"})
        self.clock = clock or Clock()
        self.code_seconds = code_seconds
        self.token_seconds = token_seconds
        self.clients: dict[str, Client] = {}
        #: Merged into every ID token issued; None removes a claim. For tests of a misbehaving provider.
        self.id_token_claims: dict[str, Any] = {}
        self.hits: Counter[str] = Counter()
        self._grants: dict[str, Grant] = {}
        self._lock = threading.Lock()
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path, _, query = self.path.partition("?")
                provider.hits[path] += 1
                if path == "/.well-known/openid-configuration":
                    self._json(200, provider.discovery())
                elif path == "/jwks":
                    self._json(200, {"keys": [provider.key.as_dict(private=False)]})
                elif path == "/authorize":
                    self._authorize(_fields(query), submitted=False)
                else:
                    self._json(404, {"error": "not found"})

            def do_POST(self) -> None:
                path = self.path.partition("?")[0]
                provider.hits[path] += 1
                length = int(self.headers.get("Content-Length") or 0)
                form = _fields(self.rfile.read(length).decode())
                if path == "/authorize":
                    self._authorize(form, submitted=True)
                elif path == "/token":
                    try:
                        self._json(200, provider.redeem(form, self.headers.get("Authorization")), no_store=True)
                    except TokenRefused as refusal:
                        body = {"error": refusal.error, "error_description": refusal.description}
                        self._json(refusal.status, body, no_store=True)
                else:
                    self._json(404, {"error": "not found"})

            def _authorize(self, request: dict[str, str], *, submitted: bool) -> None:
                try:
                    provider.check_authorization_request(request)
                except AuthorizationRefused as refusal:
                    if refusal.redirect:
                        self._back(request, {"error": refusal.error, "error_description": refusal.description})
                    else:
                        self._page(400, _error_page(refusal.description))
                    return
                if not submitted:
                    self._page(200, _sign_in_page(request, problem=None))
                elif request.get("action") == "cancel":
                    self._back(
                        request, {"error": "access_denied", "error_description": "The person cancelled the sign-in."}
                    )
                elif (username := provider.check_password(request.get("username"), request.get("password"))) is None:
                    self._page(200, _sign_in_page(request, problem="Wrong username or password."))
                else:
                    self._back(request, {"code": provider.issue_code(request, username)})

            def _back(self, request: dict[str, str], answer: dict[str, str]) -> None:
                """Send the browser back to the client with `answer`, its state and this issuer (RFC 9207)."""
                answer = {**answer, "iss": provider.url}
                if "state" in request:
                    answer["state"] = request["state"]
                separator = "&" if "?" in request["redirect_uri"] else "?"
                self.send_response(302)
                self.send_header("Location", request["redirect_uri"] + separator + urlencode(answer))
                self.send_header("Content-Length", "0")
                self.send_header("Cache-Control", "no-store")
                self.end_headers()

            def _page(self, status: int, page: str) -> None:
                body = page.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def _json(self, status: int, document: dict[str, Any], *, no_store: bool = False) -> None:
                body = json.dumps(document).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                if no_store:
                    self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        wait_until(self._ready, what=f"OpenID provider at {self.url}")
        self.hits.clear()

    def _ready(self) -> bool:
        return httpx.get(self.url + "/.well-known/openid-configuration", timeout=1).status_code == 200

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def register(self, client_id: str, *redirect_uris: str, secret: str | None = None) -> None:
        """Register a client that may be sent back to `redirect_uris` only; with `secret` it is confidential."""
        self.clients[client_id] = Client(tuple(redirect_uris), secret)

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.url,
            "authorization_endpoint": self.url + "/authorize",
            "token_endpoint": self.url + "/token",
            "jwks_uri": self.url + "/jwks",
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "profile", "email"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "authorization_response_iss_parameter_supported": True,
        }

    def check_authorization_request(self, request: Mapping[str, str]) -> None:
        client = self.clients.get(request.get("client_id", ""))
        if client is None:
            raise AuthorizationRefused("invalid_client", "Unknown client.", redirect=False)
        if request.get("redirect_uri") not in client.redirect_uris:
            # Never send a browser to a redirect URI the client did not register.
            raise AuthorizationRefused("invalid_request", "The redirect_uri is not registered.", redirect=False)
        if request.get("response_type") != "code":
            raise AuthorizationRefused("unsupported_response_type", "Only response_type=code.", redirect=True)
        if "openid" not in request.get("scope", "").split():
            raise AuthorizationRefused("invalid_scope", "The openid scope is required.", redirect=True)
        if not request.get("code_challenge") or request.get("code_challenge_method") != "S256":
            raise AuthorizationRefused(
                "invalid_request", "PKCE is required: code_challenge with code_challenge_method=S256.", redirect=True
            )

    def check_password(self, username: str | None, password: str | None) -> str | None:
        account = self.users.get(username or "")
        if account is None or not hmac.compare_digest(account.password.encode(), (password or "").encode()):
            return None
        return username

    def issue_code(self, request: Mapping[str, str], username: str) -> str:
        code = secrets.token_urlsafe(24)
        grant = Grant(
            client_id=request["client_id"],
            redirect_uri=request["redirect_uri"],
            code_challenge=request["code_challenge"],
            nonce=request.get("nonce"),
            username=username,
            scope=request.get("scope", ""),
            issued_at=self.clock(),
        )
        with self._lock:
            self._grants[code] = grant
        return code

    def redeem(self, form: Mapping[str, str], authorization: str | None) -> dict[str, Any]:
        """The token response for a code, or `TokenRefused` as RFC 6749 section 5.2 says."""
        client_id = self._authenticate_client(form, authorization)
        if form.get("grant_type") != "authorization_code":
            raise TokenRefused(400, "unsupported_grant_type", "Only authorization_code.")
        with self._lock:
            # Every attempt uses the code up, so a verifier cannot be guessed over several tries.
            grant = self._grants.pop(form.get("code", ""), None)
        if grant is None:
            raise TokenRefused(400, "invalid_grant", "The code is unknown or was already used.")
        if grant.client_id != client_id:
            raise TokenRefused(400, "invalid_grant", "The code was issued to another client.")
        if self.clock() - grant.issued_at > self.code_seconds:
            raise TokenRefused(400, "invalid_grant", "The code has expired.")
        if form.get("redirect_uri") != grant.redirect_uri:
            raise TokenRefused(400, "invalid_grant", "The redirect_uri differs from the authorization request.")
        verifier = form.get("code_verifier", "")
        if not 43 <= len(verifier) <= 128 or not set(verifier) <= _VERIFIER_ALPHABET:
            raise TokenRefused(400, "invalid_grant", "PKCE code_verifier is missing or malformed.")
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if not hmac.compare_digest(challenge, grant.code_challenge):
            raise TokenRefused(400, "invalid_grant", "PKCE code_verifier does not match the code_challenge.")
        return {
            "access_token": secrets.token_urlsafe(32),
            "token_type": "Bearer",
            "expires_in": int(self.token_seconds),
            "scope": grant.scope,
            "id_token": self.id_token(grant),
        }

    def id_token(self, grant: Grant) -> str:
        now = int(self.clock())
        account = self.users[grant.username]
        claims: dict[str, Any] = {
            "iss": self.url,
            "aud": grant.client_id,
            "azp": grant.client_id,
            "sub": f"sub-{grant.username}",
            "preferred_username": grant.username,
            "groups": list(account.roles),
            "roles": list(account.roles),
            "nonce": grant.nonce,
            "auth_time": now,
            "iat": now,
            "exp": now + int(self.token_seconds),
        }
        claims.update(self.id_token_claims)
        claims = {name: value for name, value in claims.items() if value is not None}
        return jwt.encode({"alg": "RS256", "kid": self.key.kid}, claims, self.key, algorithms=["RS256"])

    def _authenticate_client(self, form: Mapping[str, str], authorization: str | None) -> str:
        if authorization is not None and authorization.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(authorization[6:], validate=True).decode()
            except ValueError:
                raise TokenRefused(401, "invalid_client", "Malformed HTTP Basic credentials.") from None
            client_id, _, secret = decoded.partition(":")
            client_id, given = unquote(client_id), unquote(secret)
        else:
            client_id, given = form.get("client_id", ""), form.get("client_secret")
        client = self.clients.get(client_id)
        if client is None:
            raise TokenRefused(401, "invalid_client", "Unknown client.")
        if client.secret is None:
            if given:
                raise TokenRefused(401, "invalid_client", "This public client has no secret.")
        elif given is None or not hmac.compare_digest(client.secret.encode(), given.encode()):
            raise TokenRefused(401, "invalid_client", "Client authentication failed.")
        return client_id


def _fields(encoded: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(encoded, keep_blank_values=True).items()}


def _sign_in_page(request: Mapping[str, str], *, problem: str | None) -> str:
    client = html.escape(request.get("client_id", ""))
    hidden = "\n".join(
        f'      <input type="hidden" name="{name}" value="{html.escape(request[name])}">'
        for name in _REQUEST_FIELDS
        if name in request
    )
    alert = f'    <p role="alert">{html.escape(problem)}</p>\n' if problem else ""
    return f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Sign in - Test identity provider</title>
</head>
<body>
  <main>
    <h1>Sign in</h1>
    <p>to continue to {client}</p>
{alert}    <form method="post" action="/authorize">
{hidden}
      <p>
        <label for="username">Username</label>
        <input id="username" name="username" type="text" autocomplete="username" required>
      </p>
      <p>
        <label for="password">Password</label>
        <input id="password" name="password" type="password" autocomplete="current-password" required>
      </p>
      <button type="submit" name="action" value="sign_in">Sign in</button>
      <button type="submit" name="action" value="cancel" formnovalidate>Cancel</button>
    </form>
  </main>
</body>
</html>
"""


def _error_page(message: str) -> str:
    return f"""<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Sign-in error - Test identity provider</title></head>
<body><main><h1>Sign-in error</h1><p role="alert">{html.escape(message)}</p></main></body>
</html>
"""


def query_of(location: str) -> dict[str, str]:
    """The parameters of an authorization request or a redirect back, from its URL."""
    return _fields(urlsplit(location).query)
