// Runs an MCP server's entry module for a Rust test (tests/interop_policy.rs) on
// 127.0.0.1, and ends it when the test lets go.
//
// Usage: node run_server.mjs PATH/TO/ENTRY.js   (the server reads its port from PORT)
//
// The test holds this process's stdin open and never writes to it. When the test drops
// its guard, or dies in any way (even SIGKILL), the pipe closes and this process exits,
// so no server outlives the test that started it.
import net from "node:net";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";

const entry = process.argv[2];
if (!entry) {
  console.error("usage: node run_server.mjs PATH/TO/ENTRY.js");
  process.exit(2);
}

// Loopback only: the servers listen on every interface when given just a port.
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (port, ...rest) {
  const portOnly = /^\d+$/.test(String(port)) && typeof rest[0] !== "string";
  return portOnly
    ? listen.call(this, port, "127.0.0.1", ...rest)
    : listen.call(this, port, ...rest);
};

process.stdin.on("end", () => process.exit(0));
process.stdin.on("error", () => process.exit(0));
process.stdin.resume();
await import(pathToFileURL(resolve(entry)).href);
