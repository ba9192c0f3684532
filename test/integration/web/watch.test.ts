import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { type RestNode, startRestNode } from "./harness.ts";

interface Change {
  twin: { version: number; state: { setPoint?: number }; reported: Record<string, unknown> };
  events: { version: number }[];
}

/** A WebSocket client that records every message and how the socket closed. */
function watch(url: string, headers: Record<string, string> = {}) {
  const socket = new WebSocket(url, { headers });
  const messages: Change[] = [];
  const waiters: (() => void)[] = [];
  socket.on("message", (data) => {
    messages.push(JSON.parse(String(data)) as Change);
    for (const wake of waiters.splice(0)) wake();
  });
  const closed = new Promise<{ code: number; reason: string }>((resolve) =>
    socket.on("close", (code, reason) => resolve({ code, reason: String(reason) })),
  );
  const opened = new Promise<void>((resolve, reject) => {
    socket.on("open", () => resolve());
    socket.on("unexpected-response", (_request, response) =>
      reject(Object.assign(new Error(`refused: ${response.statusCode}`), { status: response.statusCode })),
    );
    socket.on("error", reject);
  });
  /** Resolves once `count` messages have arrived. */
  const received = async (count: number) => {
    while (messages.length < count) await new Promise<void>((resolve) => waiters.push(resolve));
    return messages;
  };
  return { socket, messages, closed, opened, received };
}

describe("WebSocket watch", () => {
  let rest: RestNode;
  let admin: string;
  const wsUrl = (path: string) => rest.url.replace(/^http/, "ws") + path;

  beforeAll(async () => {
    rest = await startRestNode({
      keys: {
        admin: { scopes: ["read", "write", "command", "admin"] },
        pumps: { scopes: ["read"], types: ["pump"] },
      },
      config: { http: { watchBufferLimit: 5 } },
    });
    admin = rest.keys["admin"] ?? "";
  });
  afterAll(() => rest.stop());

  it("sends the current state, then every change in order", async () => {
    const first = await rest.call("POST", "/v1/twins/thermostat/w-1/commands/setTarget", {
      token: admin,
      body: { celsius: 10 },
    });
    const start = (first.body as { version: number }).version;
    const client = watch(wsUrl("/v1/twins/thermostat/w-1/watch"), { authorization: `Bearer ${admin}` });
    await client.opened;
    await client.received(1);
    expect(client.messages[0]?.twin.version).toBe(start);
    expect(client.messages[0]?.events).toEqual([]);
    for (let celsius = 11; celsius <= 20; celsius++) {
      const answer = await rest.call("POST", "/v1/twins/thermostat/w-1/commands/setTarget", {
        token: admin,
        body: { celsius },
      });
      expect(answer.status).toBe(200);
    }
    const final = (await rest.call("GET", "/v1/twins/thermostat/w-1", { token: admin })).body as {
      version: number;
    };
    while ((client.messages.at(-1)?.twin.version ?? 0) < final.version)
      await client.received(client.messages.length + 1);
    const versions = client.messages.map((change) => change.twin.version);
    for (let i = 1; i < versions.length; i++) expect(versions[i]).toBeGreaterThan(versions[i - 1] ?? 0);
    // Every event between the first view and the last is in exactly one change, in order.
    const events = client.messages.slice(1).flatMap((change) => change.events.map((event) => event.version));
    expect(events).toEqual(Array.from({ length: final.version - start }, (_, i) => start + 1 + i));
    expect(client.messages.at(-1)?.twin.state.setPoint).toBe(20);
    client.socket.close();
    expect((await client.closed).code).toBe(1005);
  });

  it("takes the key as access_token (browsers) and refuses before the upgrade", async () => {
    const byQuery = watch(wsUrl(`/v1/twins/thermostat/w-1/watch?access_token=${admin}`));
    await byQuery.opened;
    await byQuery.received(1);
    byQuery.socket.close();
    await expect(watch(wsUrl("/v1/twins/thermostat/w-1/watch")).opened).rejects.toMatchObject({
      status: 401,
    });
    await expect(
      watch(wsUrl(`/v1/twins/thermostat/w-1/watch?access_token=${rest.keys["pumps"]}`)).opened,
    ).rejects.toMatchObject({ status: 403 });
    await expect(
      watch(wsUrl(`/v1/twins/thermo%20stat/w-1/watch?access_token=${admin}`)).opened,
    ).rejects.toMatchObject({ status: 400 });
    const plain = await rest.call("GET", "/v1/twins/thermostat/w-1/watch", { token: admin });
    expect(plain.status).toBe(400);
    expect(plain.headers.get("content-type")).toMatch(/^application\/problem\+json/);
  });

  it("closes a client that does not read with 1013 instead of buffering without bound", async () => {
    const admission = rest.node.admission;
    const before = admission.stats("watch").inFlight;
    const client = watch(wsUrl("/v1/twins/note/w-slow/watch"), { authorization: `Bearer ${admin}` });
    await client.opened;
    // The client stops reading: the server's socket fills, then its queue (5 changes), then it closes.
    const raw = (client.socket as unknown as { _socket: { pause(): void; resume(): void } })._socket;
    raw.pause();
    expect(admission.stats("watch").inFlight).toBe(before + 1);
    const blob = "x".repeat(60_000);
    let n = 0;
    while (admission.stats("watch").inFlight > before) {
      // Each write is a change of ~60 kB (the state is replaced, not grown).
      const answer = await rest.call("POST", "/v1/twins/note/w-slow/commands/write", {
        token: admin,
        body: { text: `${n++}${blob}` },
      });
      expect(answer.status, answer.text).toBe(200);
      expect(n).toBeLessThan(10_000);
    }
    raw.resume();
    const closed = await client.closed;
    expect(closed.code).toBe(1013);
    expect(closed.reason).toMatch(/^RESOURCE_EXHAUSTED: watcher too slow/);
    // What it did receive before the cut is in order.
    const versions = client.messages.map((change) => change.twin.version);
    for (let i = 1; i < versions.length; i++) expect(versions[i]).toBeGreaterThan(versions[i - 1] ?? 0);
    expect(versions.length).toBeLessThan(n);
  });
});
