"""An MCP client built on the official Python SDK (`mcp`, pinned in requirements.txt) that
authenticates with OAuth client credentials, for tests/interop_python.rs.

It connects to one MCP endpoint over Streamable HTTP with the SDK's
`ClientCredentialsOAuthProvider`, which discovers everything itself: the 401 challenge,
the protected-resource metadata (RFC 9728), the authorization server's metadata
(RFC 8414), the token request, the retry with the bearer token, and a step-up on a 403
`insufficient_scope`. Then it initializes, lists the tools and calls one.

On success it prints one JSON object on stdout:
    {"tools": [names], "call": {"is_error": bool, "text": [texts]},
     "http": [{"method", "url", "status", "www_authenticate"}]}
where `http` lists every HTTP exchange the client made, in order (MCP requests, discovery,
token requests). On any failure it prints the error on stderr, with the exchanges made so
far and the requests sent but never answered, and exits non-zero.

Usage: oauth_client.py --url URL --issuer ISSUER --client-id ID [--scopes "a b"]
           [--initial-token TOKEN] [--tool NAME] [--arguments JSON]
The client secret is read from the environment variable OAUTH_CLIENT_SECRET.
"""

import argparse
import asyncio
import json
import os
import sys
import traceback

import httpx
from mcp import ClientSession
from mcp.client.auth import TokenStorage
from mcp.client.auth.extensions.client_credentials import ClientCredentialsOAuthProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken


class MemoryStorage(TokenStorage):
    """Tokens and client information kept for this process only."""

    def __init__(self, tokens: OAuthToken | None = None) -> None:
        self.tokens = tokens
        self.client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


# Every exchange so far, and the requests sent but not yet answered: printed on failure,
# so a connection dropped mid-flow names the request it took with it.
exchanges: list[dict] = []
unanswered: list[str] = []


async def run(args: argparse.Namespace) -> dict:
    async def sent(request: httpx.Request) -> None:
        unanswered.append(f"{request.method} {request.url}")

    async def record(response: httpx.Response) -> None:
        request = response.request
        line = f"{request.method} {request.url}"
        if line in unanswered:
            unanswered.remove(line)
        exchanges.append(
            {
                "method": request.method,
                "url": str(request.url),
                "status": response.status_code,
                "www_authenticate": response.headers.get("www-authenticate"),
            }
        )

    initial = OAuthToken(access_token=args.initial_token) if args.initial_token else None
    auth = ClientCredentialsOAuthProvider(
        server_url=args.url,
        storage=MemoryStorage(initial),
        client_id=args.client_id,
        client_secret=os.environ["OAUTH_CLIENT_SECRET"],
        scopes=args.scopes,
        issuer=args.issuer,
    )
    async with (
        # trust_env=False: the tests talk to loopback only, whatever proxy is configured.
        httpx.AsyncClient(
            auth=auth,
            timeout=30,
            trust_env=False,
            event_hooks={"request": [sent], "response": [record]},
        ) as http,
        streamable_http_client(args.url, http_client=http) as (read, write, _),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        tools = await session.list_tools()
        result = await session.call_tool(args.tool, json.loads(args.arguments))
    return {
        "tools": [tool.name for tool in tools.tools],
        "call": {
            "is_error": bool(result.isError),
            "text": [c.text for c in result.content if c.type == "text"],
        },
        "http": exchanges,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="the MCP endpoint")
    parser.add_argument("--issuer", required=True, help="the authorization server's issuer")
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--scopes", help="space-separated scopes to ask for by default")
    parser.add_argument("--initial-token", help="an access token already held when starting")
    parser.add_argument("--tool", default="echo")
    parser.add_argument("--arguments", default='{"text": "hello"}', help="tool arguments, JSON")
    args = parser.parse_args()
    try:
        output = asyncio.run(run(args))
    except BaseException:  # noqa: BLE001 - report anything, including exception groups
        traceback.print_exc()
        print(f"exchanges: {json.dumps(exchanges, indent=1)}", file=sys.stderr)
        print(f"sent, never answered: {unanswered}", file=sys.stderr)
        return 1
    print(json.dumps(output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
