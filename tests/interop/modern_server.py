"""A stdio MCP server built on the official Python SDK 2.x (`MCPServer`), which serves
both protocol eras: the first request decides — a 2026-07-28 request (its `_meta`
envelope, no handshake) opens a stateless connection, `initialize` a handshake-era one.
For the stdio-upstream tests of 2026-07-28 callers (tests/it/stdio.rs).

Every tool call appends the tool's name to the file named by $CALL_LOG, so a test can
prove that a call the gateway refused never reached the server.
"""

import asyncio
import os

from mcp.server.mcpserver import Context, MCPServer

mcp = MCPServer("portcullis-modern-test")


def called(name: str) -> None:
    log = os.environ.get("CALL_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as f:
            f.write(name + "\n")


@mcp.tool()
def echo(text: str) -> str:
    """Returns the text it is given."""
    called("echo")
    return text


@mcp.tool()
def forbidden(text: str) -> str:
    """A tool the tests' policy denies."""
    called("forbidden")
    return "this must never run: " + text


@mcp.tool()
async def progress(steps: int, ctx: Context) -> str:
    """Reports `steps` progress notifications, then answers."""
    called("progress")
    for step in range(1, steps + 1):
        await ctx.report_progress(step, steps)
        await asyncio.sleep(0.1)
    return f"done in {steps} steps"


if __name__ == "__main__":
    mcp.run()
