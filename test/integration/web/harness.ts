/**
 * A real node for the REST tests: SQLite in a temporary folder, gRPC and HTTP on free loopback
 * ports, the example twins, and (optionally) an API keys file with one key per role. `call` sends
 * a request with `fetch` and returns the status, headers and parsed body.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { NodeConfigInput } from "doppel/node";
import { DoppelNode } from "../../../runtime/node/node.ts";
import { silentLogger } from "../../../runtime/observability/logger.ts";
import { createKey, type KeySpec } from "../../../runtime/security/api-keys.ts";
import { Pump } from "../../../twins/pump.ts";
import { Thermostat } from "../../../twins/thermostat.ts";
import { Note } from "./fixtures/note.ts";

export interface Answer {
  readonly status: number;
  readonly headers: Headers;
  readonly body: unknown;
  readonly text: string;
}

export interface RestNode {
  readonly node: DoppelNode;
  readonly url: string;
  readonly dir: string;
  /** The API key of each role given to {@link startRestNode}. */
  readonly keys: Readonly<Record<string, string>>;
  call(
    method: string,
    path: string,
    options?: { body?: unknown; raw?: string; token?: string; headers?: Record<string, string> },
  ): Promise<Answer>;
  stop(): Promise<void>;
}

export async function startRestNode(
  options: { keys?: Record<string, KeySpec>; config?: NodeConfigInput } = {},
): Promise<RestNode> {
  const dir = mkdtempSync(join(tmpdir(), "doppel-rest-"));
  const keysFile = join(dir, "api-keys.json");
  const keys: Record<string, string> = {};
  for (const [role, spec] of Object.entries(options.keys ?? {})) keys[role] = createKey(keysFile, spec).key;
  const config: NodeConfigInput = {
    dataDir: dir,
    store: { kind: "sqlite" },
    ...options.config,
    grpc: {
      listen: "127.0.0.1:0",
      ...(options.keys ? { apiKeys: keysFile } : {}),
      ...options.config?.grpc,
    },
    http: { listen: "127.0.0.1:0", ...options.config?.http },
  };
  const node = await DoppelNode.start(config, { twins: [Thermostat, Pump, Note], logger: silentLogger() });
  const url = node.httpUrl ?? "";
  return {
    node,
    url,
    dir,
    keys,
    async call(method, path, { body, raw, token, headers = {} } = {}) {
      const payload = raw ?? (body === undefined ? undefined : JSON.stringify(body));
      const response = await fetch(url + path, {
        method,
        headers: {
          ...(payload === undefined ? {} : { "content-type": "application/json" }),
          ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
          ...headers,
        },
        ...(payload === undefined ? {} : { body: payload }),
      });
      const text = await response.text();
      let parsed: unknown;
      try {
        parsed = text === "" ? undefined : JSON.parse(text);
      } catch {
        parsed = text;
      }
      return { status: response.status, headers: response.headers, body: parsed, text };
    },
    async stop() {
      await node.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
