"""A REST API with its OpenAPI document, for the OpenAPI connector's tests.

Run: `python rest_api.py --port PORT [--tls DIR]`. With `--tls`, it serves HTTPS with DIR's
`server.pem`/`server.key` and requires a client certificate signed by DIR's `ca.pem` (mTLS).

Besides the API it serves `/_counts` (how often each counted endpoint was hit, and how many
OAuth tokens were issued) and `POST /_revoke` (every issued token stops working), so tests can
check retries and token renewal from the outside.
"""

from __future__ import annotations

import argparse
import base64
import json
import ssl
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import anyio
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

API_KEY = "key-0123456789"
BEARER_TOKEN = "bearer-0123456789"
BASIC_USER, BASIC_PASSWORD = "svc-crm", "pw-0123456789"
CLIENT_ID, CLIENT_SECRET = "gateway-client", "secret-0123456789"
#: Seconds an issued OAuth token lives (what `expires_in` says).
TOKEN_SECONDS = 2

_PLAIN = {"type": "string"}


def _op(
    operation_id: str,
    *,
    params: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
    response: dict[str, Any] | None = None,
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "summary": operation_id.replace("_", " "),
        "parameters": params or [],
        "responses": {
            "200": {"description": "OK", "content": {"application/json": {"schema": response or {"type": "object"}}}}
        },
    }
    if body is not None:
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    return operation


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": _PLAIN}


SPEC: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "Test CRM", "version": "1.0"},
    "paths": {
        "/customers/{customer_id}": {
            "get": _op(
                "get_customer",
                params=[
                    _path_param("customer_id"),
                    {"name": "fields", "in": "query", "schema": {"type": "array", "items": _PLAIN}},
                    {"name": "tags", "in": "query", "explode": False, "schema": {"type": "array", "items": _PLAIN}},
                    {"name": "tenant", "in": "query", "schema": _PLAIN},
                ],
            )
        },
        "/orders": {
            "post": {
                **_op(
                    "create_order",
                    body={
                        "type": "object",
                        "required": ["item", "amount"],
                        "properties": {"item": _PLAIN, "amount": {"type": "number"}, "note": _PLAIN},
                    },
                ),
                "responses": {
                    "201": {"description": "Created", "content": {"application/json": {"schema": {"type": "object"}}}}
                },
            }
        },
        "/missing": {"get": _op("find_missing")},
        "/broken": {"get": _op("break_down")},
        "/html-error": {"get": _op("html_error")},
        "/huge": {"get": _op("huge_list")},
        "/slow": {"get": _op("slow_body")},
        "/flaky/{key}": {
            "get": _op("flaky_read", params=[_path_param("key")]),
            "post": _op("flaky_write", params=[_path_param("key")]),
        },
        "/auth/check": {"get": _op("auth_check")},
        "/redirect/{where}": {"get": _op("redirect", params=[_path_param("where")])},
        "/busy": {"get": _op("busy_for_an_hour")},
    },
}


counts: Counter[str] = Counter()
issued: list[str] = []
#: When each issued token stops working (monotonic seconds).
expires: dict[str, float] = {}
revoked: set[str] = set()


async def spec(request: Request) -> Response:
    return JSONResponse(SPEC)


async def get_customer(request: Request) -> Response:
    return JSONResponse(
        {
            "id": request.path_params["customer_id"],
            "raw_path": request.scope["raw_path"].decode(),
            "query": request.scope["query_string"].decode(),
            "fields": request.query_params.getlist("fields"),
            "tenant": request.query_params.get("tenant"),
        }
    )


async def create_order(request: Request) -> Response:
    counts["create_order"] += 1
    return JSONResponse({"id": "order-1", "received": await request.json()}, status_code=201)


async def missing(request: Request) -> Response:
    return JSONResponse({"error": "no customer with that id"}, status_code=404)


async def broken(request: Request) -> Response:
    counts["broken"] += 1
    return PlainTextResponse("database connection pool exhausted", status_code=500)


async def html_error(request: Request) -> Response:
    page = (
        "<!doctype html><html><head><title>Error</title><style>body{color:red}</style>"
        "<script>var x = 1;</script></head><body><h1>Service down</h1><p>Back at 5 pm &amp; later.</p></body></html>"
    )
    return HTMLResponse(page, status_code=500)


async def huge(request: Request) -> Response:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"items": ['
        row = json.dumps({"id": "x" * 90}).encode() + b","
        for _ in range(10 * 1024 * 1024 // len(row)):
            yield row
        yield b'{"id": "last"}]}'

    counts["huge"] += 1
    return StreamingResponse(chunks(), media_type="application/json")


async def slow(request: Request) -> Response:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"items": ['
        for _ in range(600):
            await anyio.sleep(0.1)
            yield b'"tick",'
        yield b'"end"]}'

    return StreamingResponse(chunks(), media_type="application/json")


async def flaky(request: Request) -> Response:
    """Answers 503 to the first two requests of each key (GET and POST counted apart), then 200."""
    name = f"flaky:{request.method}:{request.path_params['key']}"
    counts[name] += 1
    if counts[name] <= 2:
        return JSONResponse({"error": "overloaded"}, status_code=503, headers={"Retry-After": "0"})
    return JSONResponse({"ok": True, "attempts": counts[name]})


async def auth_check(request: Request) -> Response:
    """Says which credential came, or 401; the test knows which one its connector should send."""
    header = request.headers.get("authorization", "")
    if request.headers.get("x-api-key") == API_KEY:
        return JSONResponse({"credential": "api_key_header"})
    if request.query_params.get("api_key") == API_KEY:
        return JSONResponse({"credential": "api_key_query", "query": request.scope["query_string"].decode()})
    if header == f"Bearer {BEARER_TOKEN}":
        return JSONResponse({"credential": "bearer"})
    if header == "Basic " + base64.b64encode(f"{BASIC_USER}:{BASIC_PASSWORD}".encode()).decode():
        return JSONResponse({"credential": "basic"})
    token = header.removeprefix("Bearer ")
    if token in issued and token not in revoked and time.monotonic() < expires[token]:
        counts["oauth_calls"] += 1
        return JSONResponse({"credential": "oauth", "token": token})
    counts["unauthorized"] += 1
    return JSONResponse({"error": "unauthorized"}, status_code=401)


async def redirect(request: Request) -> Response:
    """`same`: to this API's own customer record; anything else: to another host."""
    if request.path_params["where"] == "same":
        return Response(status_code=307, headers={"Location": "/customers/moved"})
    return Response(status_code=302, headers={"Location": "http://elsewhere.invalid/steal"})


async def busy(request: Request) -> Response:
    counts["busy"] += 1
    return JSONResponse({"error": "maintenance"}, status_code=503, headers={"Retry-After": "3600"})


async def token(request: Request) -> Response:
    form = await request.form()
    expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    if request.headers.get("authorization") != expected or form.get("grant_type") != "client_credentials":
        return JSONResponse({"error": "invalid_client"}, status_code=401)
    if form.get("scope") != "crm.read crm.write" or form.get("audience") != "https://crm.test":
        return JSONResponse({"error": "invalid_scope"}, status_code=400)
    issued.append(f"token-{len(issued) + 1}")
    expires[issued[-1]] = time.monotonic() + TOKEN_SECONDS
    return JSONResponse({"access_token": issued[-1], "token_type": "Bearer", "expires_in": TOKEN_SECONDS})


async def revoke(request: Request) -> Response:
    revoked.update(issued)
    return JSONResponse({"revoked": len(issued)})


async def show_counts(request: Request) -> Response:
    return JSONResponse({**counts, "tokens_issued": len(issued)})


app = Starlette(
    routes=[
        Route("/openapi.json", spec),
        Route("/customers/{customer_id:path}", get_customer),
        Route("/orders", create_order, methods=["POST"]),
        Route("/missing", missing),
        Route("/broken", broken),
        Route("/html-error", html_error),
        Route("/huge", huge),
        Route("/slow", slow),
        Route("/flaky/{key}", flaky, methods=["GET", "POST"]),
        Route("/auth/check", auth_check),
        Route("/redirect/{where}", redirect),
        Route("/busy", busy),
        Route("/oauth/token", token, methods=["POST"]),
        Route("/_revoke", revoke, methods=["POST"]),
        Route("/_counts", show_counts),
    ]
)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tls")
    args = parser.parse_args(argv)
    tls: dict[str, Any] = {}
    if args.tls:
        tls = {
            "ssl_certfile": f"{args.tls}/server.pem",
            "ssl_keyfile": f"{args.tls}/server.key",
            "ssl_ca_certs": f"{args.tls}/ca.pem",
            "ssl_cert_reqs": ssl.CERT_REQUIRED,
        }
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", **tls)


if __name__ == "__main__":
    main(sys.argv[1:])
