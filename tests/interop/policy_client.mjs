// An MCP client built on the official TypeScript SDK (`@modelcontextprotocol/sdk`, pinned
// in package.json), for tests/interop_policy.rs: what a caller sees through the gateway's
// per-call authorization.
//
// It connects to one MCP endpoint over Streamable HTTP with an API key, lists every tool
// and every resource (following `nextCursor` to the end), makes the calls it is given, and
// prints one JSON object on stdout:
//   {"tools": [names], "tool_pages": n, "resources": [uris], "resource_pages": [sizes],
//    "calls": [{"name", "progress": n, "result": {"is_error", "text": [texts]}}
//              | {"name", "progress": n, "error": {"type", "code", "message"}}]}
// Each call counts the progress notifications it got; the client declares sampling and
// answers every sampling request with the text "sampled by the client".
// A call the SDK rejects is recorded with the error it raised (`McpError` for a JSON-RPC
// error answer); any other failure is printed on stderr with a non-zero exit.
// With `--read '[uris]'` it then reads each resource: "reads": [{"uri", "texts": [..]} |
// {"uri", "error": {..}}]. With `--list-changed` it then waits (up to 10 s) for a
// `notifications/tools/list_changed` and lists the tools again: "tools_after": [names].
//
// Usage: node policy_client.mjs --url URL [--calls '[{"name": N, "arguments": {..}}]'] [--transport sse]
//                               [--read '["uri", ..]'] [--list-changed]
// With `--transport sse` it speaks the legacy HTTP+SSE transport (URL is the event stream).
// The API key is read from the environment variable MCP_API_KEY and sent as X-API-Key.
import { parseArgs } from "node:util";

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { SSEClientTransport } from "@modelcontextprotocol/sdk/client/sse.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import {
  CreateMessageRequestSchema,
  McpError,
  ToolListChangedNotificationSchema,
} from "@modelcontextprotocol/sdk/types.js";

/** More pages than any test serves: a cursor loop fails instead of running forever. */
const MAX_PAGES = 1000;

/** Calls `list(cursor)` until a page has no `nextCursor`; returns the items and the page sizes. */
async function listAll(list, field) {
  const items = [];
  const pages = [];
  let cursor;
  do {
    if (pages.length === MAX_PAGES) {
      throw new Error(`${field}: still a nextCursor after ${MAX_PAGES} pages`);
    }
    const page = await list(cursor === undefined ? {} : { cursor });
    items.push(...page[field]);
    pages.push(page[field].length);
    cursor = page.nextCursor;
  } while (cursor !== undefined);
  return { items, pages };
}

async function call(client, { name, arguments: args }) {
  let progress = 0;
  const onprogress = () => {
    progress += 1;
  };
  try {
    const result = await client.callTool({ name, arguments: args ?? {} }, undefined, {
      onprogress,
    });
    return {
      name,
      progress,
      result: {
        is_error: Boolean(result.isError),
        text: result.content.filter((c) => c.type === "text").map((c) => c.text),
      },
    };
  } catch (error) {
    if (!(error instanceof McpError)) {
      throw error;
    }
    return {
      name,
      progress,
      error: { type: error.name, code: error.code, message: error.message },
    };
  }
}

async function read(client, uri) {
  try {
    const result = await client.readResource({ uri });
    return { uri, texts: result.contents.map((c) => c.text ?? null) };
  } catch (error) {
    if (!(error instanceof McpError)) {
      throw error;
    }
    return { uri, error: { code: error.code, message: error.message } };
  }
}

async function run({ url, calls, legacy, reads, listChanged }) {
  const apiKey = process.env.MCP_API_KEY;
  if (!apiKey) {
    throw new Error("MCP_API_KEY is not set");
  }
  const options = { requestInit: { headers: { "X-API-Key": apiKey } } };
  const transport = legacy
    ? new SSEClientTransport(new URL(url), options)
    : new StreamableHTTPClientTransport(new URL(url), options);
  const client = new Client(
    { name: "portcullis-policy-interop", version: "1.0.0" },
    { capabilities: { sampling: {} } },
  );
  client.setRequestHandler(CreateMessageRequestSchema, async () => ({
    role: "assistant",
    content: { type: "text", text: "sampled by the client" },
    model: "interop",
  }));
  let changed;
  const toolsChanged = new Promise((resolve) => {
    changed = resolve;
  });
  client.setNotificationHandler(ToolListChangedNotificationSchema, () => changed());
  await client.connect(transport);
  try {
    const tools = await listAll((params) => client.listTools(params), "tools");
    // Resources only from a server that says it has them.
    const resources = client.getServerCapabilities()?.resources
      ? await listAll((params) => client.listResources(params), "resources")
      : { items: [], pages: [] };
    const results = [];
    for (const c of calls) {
      results.push(await call(client, c));
    }
    const output = {
      tools: tools.items.map((t) => t.name),
      tool_pages: tools.pages.length,
      resources: resources.items.map((r) => r.uri),
      resource_pages: resources.pages,
      calls: results,
    };
    if (reads !== undefined) {
      output.reads = [];
      for (const uri of reads) {
        output.reads.push(await read(client, uri));
      }
    }
    if (listChanged) {
      let timer;
      const timeout = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error("no tools/list_changed within 10 s")), 10000);
      });
      await Promise.race([toolsChanged, timeout]);
      clearTimeout(timer);
      const after = await listAll((params) => client.listTools(params), "tools");
      output.tools_after = after.items.map((t) => t.name);
    }
    if (!legacy) {
      await transport.terminateSession();
    }
    return output;
  } finally {
    await client.close();
  }
}

const { values } = parseArgs({
  options: {
    url: { type: "string" },
    calls: { type: "string", default: "[]" },
    transport: { type: "string", default: "streamable_http" },
    read: { type: "string" },
    "list-changed": { type: "boolean", default: false },
  },
});
if (!values.url) {
  console.error("usage: node policy_client.mjs --url URL [--calls JSON]");
  process.exit(2);
}
try {
  const output = await run({
    url: values.url,
    calls: JSON.parse(values.calls),
    legacy: values.transport === "sse",
    reads: values.read === undefined ? undefined : JSON.parse(values.read),
    listChanged: values["list-changed"],
  });
  console.log(JSON.stringify(output));
} catch (error) {
  console.error(error);
  process.exit(1);
}
