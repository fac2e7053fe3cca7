"""An MCP client built on the official Python SDK (`mcp`, pinned in requirements.txt) for
tests/interop_policy.rs: what a caller sees through the gateway's per-call authorization.

It connects to one MCP endpoint over Streamable HTTP with an API key, lists every tool and
every resource (following `nextCursor` to the end), makes the calls it is given, and
prints one JSON object on stdout:
    {"tools": [names], "tool_pages": n, "resources": [uris], "resource_pages": [sizes],
     "calls": [{"name", "progress": n, "result": {"is_error", "text": [texts]}}
               | {"name", "progress": n, "error": {"type", "code", "message"}}]}
Each call counts the progress notifications it got; the client declares sampling and
answers every sampling request with the text "sampled by the client".
With `--read '[uris]'` it then reads each resource: "reads": [{"uri", "texts": [..]} |
{"uri", "error": {..}}]. With `--list-changed` it then waits (up to 10 s) for a
`notifications/tools/list_changed` and lists the tools again: "tools_after": [names].
A call the SDK rejects is recorded with the error it raised (`McpError` for a JSON-RPC
error answer); any other failure is printed on stderr with a non-zero exit.

Usage: policy_client.py --url URL [--calls '[{"name": N, "arguments": {..}}]'] [--transport sse]
                        [--read '["uri", ..]'] [--list-changed]
With `--transport sse` it speaks the legacy HTTP+SSE transport (URL is the event stream).
The API key is read from the environment variable MCP_API_KEY and sent as X-API-Key.
"""

import argparse
import asyncio
import json
import os
import sys
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from pydantic import AnyUrl
from mcp import ClientSession
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import McpError
from mcp.types import (
    CreateMessageResult,
    PaginatedRequestParams,
    ServerNotification,
    TextContent,
    ToolListChangedNotification,
)

# More pages than any test serves: a cursor loop fails instead of running forever.
MAX_PAGES = 1000


async def list_all(
    list_page: Callable[[PaginatedRequestParams | None], Awaitable[Any]], field: str
) -> tuple[list[Any], list[int]]:
    """Calls `list_page` until a page has no `nextCursor`; returns items and page sizes."""
    items: list[Any] = []
    pages: list[int] = []
    cursor: str | None = None
    while True:
        if len(pages) == MAX_PAGES:
            raise RuntimeError(f"{field}: still a nextCursor after {MAX_PAGES} pages")
        params = None if cursor is None else PaginatedRequestParams(cursor=cursor)
        page = await list_page(params)
        found = getattr(page, field)
        items.extend(found)
        pages.append(len(found))
        cursor = page.nextCursor
        if cursor is None:
            return items, pages


SAMPLED = "sampled by the client"


async def sample(_context: Any, _params: Any) -> CreateMessageResult:
    return CreateMessageResult(
        role="assistant", content=TextContent(type="text", text=SAMPLED), model="interop"
    )


async def call(session: ClientSession, name: str, arguments: dict) -> dict:
    progress: list[float] = []

    async def on_progress(done: float, _total: float | None, _message: str | None) -> None:
        progress.append(done)

    try:
        result = await session.call_tool(name, arguments, progress_callback=on_progress)
    except McpError as error:
        return {
            "name": name,
            "progress": len(progress),
            "error": {
                "type": type(error).__name__,
                "code": error.error.code,
                "message": error.error.message,
            },
        }
    return {
        "name": name,
        "progress": len(progress),
        "result": {
            "is_error": bool(result.isError),
            "text": [c.text for c in result.content if c.type == "text"],
        },
    }


async def read_resource(session: ClientSession, uri: str) -> dict:
    try:
        result = await session.read_resource(AnyUrl(uri))
    except McpError as error:
        return {"uri": uri, "error": {"code": error.error.code, "message": error.error.message}}
    return {"uri": uri, "texts": [getattr(c, "text", None) for c in result.contents]}


async def run(args: argparse.Namespace) -> dict:
    headers = {"X-API-Key": os.environ["MCP_API_KEY"]}
    changed = asyncio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, ServerNotification) and isinstance(
            message.root, ToolListChangedNotification
        ):
            changed.set()

    if args.transport == "sse":
        async with (
            sse_client(args.url, headers=headers) as (read, write),
            ClientSession(
                read, write, sampling_callback=sample, message_handler=on_message
            ) as session,
        ):
            return await converse(session, args, changed)
    async with (
        # trust_env=False: the tests talk to loopback only, whatever proxy is configured.
        httpx.AsyncClient(headers=headers, timeout=30, trust_env=False) as http,
        streamable_http_client(args.url, http_client=http) as (read, write, _),
        ClientSession(
            read, write, sampling_callback=sample, message_handler=on_message
        ) as session,
    ):
        return await converse(session, args, changed)


async def converse(
    session: ClientSession, args: argparse.Namespace, changed: asyncio.Event
) -> dict:
    init = await session.initialize()
    tools, tool_pages = await list_all(lambda p: session.list_tools(params=p), "tools")
    # Resources only from a server that says it has them.
    resources, resource_pages = [], []
    if init.capabilities.resources is not None:
        resources, resource_pages = await list_all(
            lambda p: session.list_resources(params=p), "resources"
        )
    calls = [
        await call(session, c["name"], c.get("arguments", {})) for c in json.loads(args.calls)
    ]
    output = {
        "tools": [tool.name for tool in tools],
        "tool_pages": len(tool_pages),
        "resources": [str(resource.uri) for resource in resources],
        "resource_pages": resource_pages,
        "calls": calls,
    }
    if args.read:
        output["reads"] = [await read_resource(session, uri) for uri in json.loads(args.read)]
    if args.list_changed:
        await asyncio.wait_for(changed.wait(), timeout=10)
        after, _ = await list_all(lambda p: session.list_tools(params=p), "tools")
        output["tools_after"] = [tool.name for tool in after]
    return output


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="the MCP endpoint")
    parser.add_argument("--calls", default="[]", help='[{"name": N, "arguments": {..}}], JSON')
    parser.add_argument("--transport", default="streamable_http", choices=["streamable_http", "sse"])
    parser.add_argument("--read", help='["uri", ..], JSON: resources to read after the calls')
    parser.add_argument(
        "--list-changed",
        action="store_true",
        help="wait for a tools/list_changed after the calls, then list the tools again",
    )
    args = parser.parse_args()
    try:
        output = asyncio.run(run(args))
    except BaseException:  # noqa: BLE001 - report anything, including exception groups
        traceback.print_exc()
        return 1
    print(json.dumps(output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
