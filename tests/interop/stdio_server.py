"""A stdio MCP server built on the official Python SDK (FastMCP), for the stdio-upstream
tests (tests/it/stdio.rs): the gateway runs it as a child process.

Every tool call appends the tool's name to the file named by $CALL_LOG, so a test can
prove that a call the gateway refused never reached the server. `TRANSPORT=sse` serves
the same tools over the legacy HTTP+SSE transport on $PORT instead.
"""

import asyncio
import os
import sys

from mcp.server.fastmcp import Context, FastMCP
from mcp.types import SamplingMessage, TextContent

mcp = FastMCP("portcullis-stdio-test", port=int(os.environ.get("PORT", "0") or 0))


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
def environment() -> list[str]:
    """The names of the variables in the server's environment."""
    called("environment")
    return sorted(os.environ)


@mcp.tool()
async def progress(steps: int, ctx: Context) -> str:
    """Reports `steps` progress notifications, then answers."""
    called("progress")
    for step in range(1, steps + 1):
        await ctx.report_progress(step, steps)
        await asyncio.sleep(0.1)
    return f"done in {steps} steps"


@mcp.tool()
async def ask_model(question: str, ctx: Context) -> str:
    """Asks the client's model (sampling) and returns its answer."""
    called("ask_model")
    result = await ctx.session.create_message(
        messages=[
            SamplingMessage(role="user", content=TextContent(type="text", text=question))
        ],
        max_tokens=20,
    )
    content = result.content
    return "model said: " + (content.text if isinstance(content, TextContent) else "?")


@mcp.tool()
async def announce(text: str, ctx: Context) -> str:
    """Answers at once; a moment later logs `text` to the client on its own (a message
    that belongs to no request) and writes it to stderr."""
    called("announce")
    session = ctx.session

    async def later() -> None:
        await asyncio.sleep(0.3)
        print(f"announcing {text}", file=sys.stderr, flush=True)
        await session.send_log_message(level="info", data=text)

    asyncio.get_running_loop().create_task(later())
    return "announced"


@mcp.tool()
async def add_tool(name: str, ctx: Context) -> str:
    """Adds a tool called `name` (it returns its text) and tells the client that the
    list of tools changed."""
    called("add_tool")

    def added(text: str) -> str:
        return text

    mcp.add_tool(added, name=name, description="A tool added while the server ran.")
    await ctx.session.send_tool_list_changed()
    return f"added {name}"


@mcp.tool()
async def slow(seconds: float) -> str:
    """Answers after `seconds`, saying nothing before."""
    called("slow")
    await asyncio.sleep(seconds)
    return f"slept {seconds} s"


@mcp.tool()
def crash() -> str:
    """Exits the process in the middle of the call."""
    called("crash")
    sys.stdout.flush()
    os._exit(3)


if __name__ == "__main__":
    mcp.run(transport=os.environ.get("TRANSPORT", "stdio"))
