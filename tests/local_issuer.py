"""A real OpenID provider for tests: discovery and a JWK set over HTTP on 127.0.0.1, and signed tokens."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from joserfc import jwt
from joserfc.jwk import Key, RSAKey

from harness import STARTUP_DEADLINE, wait_until

AUDIENCE = "https://gateway.example/mcp"


class Clock:
    """Wall-clock time that a test can move forward, so cache and rate-limit windows pass at once."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class LocalIssuer:
    """An OpenID provider on a free port of 127.0.0.1 that publishes `published` as its JWK set."""

    def __init__(self, *keys: Key, clock: Clock | None = None, audience: str = AUDIENCE) -> None:
        self.clock = clock or Clock()
        self.audience = audience
        self.signing_keys: dict[str, Key] = {key.kid: key for key in keys if key.kid}
        self.published: list[Key] = list(keys)
        self.hits: Counter[str] = Counter()
        self.jwks_status = 200
        #: While set to an unset event, key set requests are counted, then held until it is set.
        self.jwks_gate: threading.Event | None = None
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                issuer.hits[self.path] += 1
                if self.path == "/.well-known/openid-configuration":
                    self._answer(200, {"issuer": issuer.url, "jwks_uri": issuer.url + "/jwks"})
                elif self.path == "/jwks":
                    if issuer.jwks_gate is not None:
                        issuer.jwks_gate.wait(STARTUP_DEADLINE)
                    body = {"keys": [key.as_dict(private=False) for key in issuer.published]}
                    self._answer(issuer.jwks_status, body if issuer.jwks_status == 200 else {"error": "down"})
                else:
                    self._answer(404, {"error": "not found"})

            def _answer(self, status: int, document: dict[str, Any]) -> None:
                body = json.dumps(document).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        wait_until(self._ready, what=f"local issuer at {self.url}")
        self.hits.clear()

    def _ready(self) -> bool:
        return httpx.get(self.url + "/.well-known/openid-configuration", timeout=1).status_code == 200

    @property
    def jwks_hits(self) -> int:
        return self.hits["/jwks"]

    def publish(self, key: Key) -> None:
        """Rotate in a new key: publish it and sign with it from now on."""
        self.signing_keys[key.kid or ""] = key
        self.published.append(key)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def token(self, key_id: str | None = None, *, header: dict[str, Any] | None = None, **claims: Any) -> str:
        key = self.signing_keys[key_id] if key_id else next(iter(self.signing_keys.values()))
        now = int(self.clock())
        body: dict[str, Any] = {
            "iss": self.url,
            "aud": self.audience,
            "azp": "billing-agent",
            "sub": "alice",
            "iat": now,
            "exp": now + 300,
            "jti": "token-1",
        }
        body.update(claims)
        body = {name: value for name, value in body.items() if value is not None}
        algorithm = "RS256" if isinstance(key, RSAKey) else "ES256"
        protected = {"alg": algorithm, "kid": key.kid, **(header or {})}
        return jwt.encode(protected, body, key, algorithms=[protected["alg"]])
