import { createSocket } from "node:dgram";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generate, parse } from "coap-packet";
import { DoppelNode, MemoryEventStore, type NodeConfigInput } from "doppel/node";
import { afterAll, describe, expect, it } from "vitest";
import { silentLogger } from "../../runtime/observability/logger.ts";
import { Thermostat } from "../../twins/thermostat.ts";

const dataDir = mkdtempSync(join(tmpdir(), "doppel-coap-listener-"));
afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

const start = (coap: NodeConfigInput["coap"], extra: Partial<NodeConfigInput> = {}) =>
  DoppelNode.start(
    { dataDir, grpc: { listen: false }, log: { level: "silent" }, coap, ...extra },
    { twins: [Thermostat], store: new MemoryEventStore(), logger: silentLogger() },
  );

describe("the CoAP listener is secure by default", () => {
  it("refuses plaintext CoAP beyond loopback without --insecure, naming the fix", async () => {
    await expect(start({ listen: "0.0.0.0:0" })).rejects.toThrow(
      /refusing to serve CoAP on 0\.0\.0\.0:0 \(not loopback\).*--insecure/,
    );
  });

  it("refuses to turn credentials off beyond loopback, even with --insecure", async () => {
    await expect(start({ listen: "0.0.0.0:0", insecure: true, requireCredentials: false })).rejects.toThrow(
      /requireCredentials cannot be false/,
    );
  });

  it("serves beyond loopback with --insecure, and then requires device credentials", async () => {
    const node = await start({ listen: "0.0.0.0:0", insecure: true });
    try {
      expect(node.coap?.address).toMatch(/^0\.0\.0\.0:\d+$/);
      const port = Number(node.coap?.address.split(":")[1]);
      const socket = createSocket("udp4");
      const answer = new Promise<Buffer>((resolve) => socket.once("message", resolve));
      const path = ["v1", "thermostat", "t1", "reported"].map((s) => ({
        name: "Uri-Path" as const,
        value: Buffer.from(s),
      }));
      socket.send(
        generate({
          code: "0.02",
          messageId: 7,
          token: Buffer.from([1]),
          confirmable: true,
          options: path,
          payload: Buffer.from("{}"),
        }),
        port,
        "127.0.0.1",
      );
      const response = parse(await answer);
      socket.close();
      expect(response.code).toBe("4.01");
      expect(response.payload.toString()).toMatch(/missing credential/);
    } finally {
      await node.stop();
    }
  });

  it("a port already in use fails the start with UNAVAILABLE and closes what the node opened", async () => {
    const first = await start({ listen: "127.0.0.1:0" });
    try {
      const port = first.coap?.address.split(":")[1];
      await expect(start({ listen: `127.0.0.1:${port}` })).rejects.toThrow(
        /cannot serve CoAP on 127\.0\.0\.1/,
      );
    } finally {
      await first.stop();
    }
  });
});
