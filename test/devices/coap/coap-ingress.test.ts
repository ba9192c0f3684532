import { createSocket, type Socket } from "node:dgram";
import { generate, type ParsedPacket, parse } from "coap-packet";
import { afterEach, describe, expect, it } from "vitest";
import { InProcessBus } from "../../../cluster/transport/in-process.ts";
import type { DurableAck, Transport } from "../../../cluster/transport/transport.ts";
import { Admission, DEFAULT_ADMISSION_LIMITS } from "../../../runtime/core/admission.ts";
import { SystemClock } from "../../../runtime/core/clock.ts";
import { CoapIngress } from "../../../runtime/devices/coap/coap-ingress.ts";
import { TwinRegistry } from "../../../runtime/engine/twin-type.ts";
import { silentLogger } from "../../../runtime/observability/logger.ts";
import { Thermostat } from "../../../twins/thermostat.ts";
import { eventually } from "../../support/eventually.ts";

/** A transport whose durable publishes wait until the test lets them through. */
function heldTransport(): { transport: Transport; held: (() => void)[]; published: string[] } {
  const base = new InProcessBus().connect();
  const held: (() => void)[] = [];
  const published: string[] = [];
  const transport: Transport = Object.assign(Object.create(base) as Transport, {
    publishDurable: (subject: string) =>
      new Promise<DurableAck>((resolve) => {
        published.push(subject);
        held.push(() => resolve({ duplicate: false }));
      }),
  });
  return { transport, held, published };
}

/** A raw CoAP peer collecting every datagram it gets. */
async function peer(): Promise<{ socket: Socket; got: ParsedPacket[] }> {
  const socket = createSocket("udp4");
  const got: ParsedPacket[] = [];
  socket.on("message", (datagram) => got.push(parse(datagram)));
  await new Promise<void>((resolve) => socket.bind(0, "127.0.0.1", () => resolve()));
  return { socket, got };
}

const report = (messageId: number, id: string) =>
  generate({
    code: "0.02",
    messageId,
    token: Buffer.from([messageId & 0xff]),
    confirmable: true,
    options: ["v1", "thermostat", id, "reported"].map((s) => ({
      name: "Uri-Path" as const,
      value: Buffer.from(s),
    })),
    payload: Buffer.from(JSON.stringify({ temperature: 20 })),
  });

describe("CoAP ingress: acknowledgement and admission", () => {
  const closing: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const close of closing.splice(0)) await close();
  });

  async function start(admission?: Admission) {
    const registry = new TwinRegistry({ snapshotEvery: 100, idleTimeoutMs: 60_000 });
    registry.register(Thermostat);
    const held = heldTransport();
    const ingress = await CoapIngress.start({
      host: "127.0.0.1",
      port: 0,
      transport: held.transport,
      registry,
      limits: { maxBytes: 4096, maxDepth: 16 },
      credentials: undefined,
      requireCredentials: false,
      ...(admission ? { admission } : {}),
      logger: silentLogger(),
      now: () => Date.now(),
      ackTimeoutMs: 30_000,
      maxObservers: 8,
      maxObserversPerDevice: 2,
    });
    const device = await peer();
    closing.push(async () => {
      for (const release of held.held) release();
      device.socket.close();
      await ingress.stop();
    });
    const port = Number(ingress.address.split(":")[1]);
    return {
      ...held,
      ingress,
      device,
      send: (datagram: Buffer) => device.socket.send(datagram, port, "127.0.0.1"),
    };
  }

  it("answers a confirmable report 2.04 only after its durable publish is acknowledged; until then an empty ACK", async () => {
    const t = await start();
    t.send(report(1, "t1"));
    // The library sends an empty ACK when the answer takes longer than its piggyback window.
    const ack = await eventually(
      () => t.device.got.find((p) => p.ack && p.code === "0.00" && p.messageId === 1),
      "the empty ACK",
    );
    expect(ack.token.length).toBe(0); // an Empty message: no token, no payload (RFC 7252 §4.1)
    expect(ack.payload.length).toBe(0);
    expect(t.published).toEqual(["doppel.dev.thermostat.t1.reported"]);
    expect(t.device.got.some((p) => p.code === "2.04")).toBe(false);
    t.held[0]!();
    const changed = await eventually(() => t.device.got.find((p) => p.code === "2.04"), "2.04 Changed");
    expect(changed.token).toEqual(Buffer.from([1])); // a separate response, same token
    expect(t.ingress.stats.stored).toBe(1);
  });

  it("refuses a report over the node's device bound with 5.03 and Max-Age, before publishing it", async () => {
    const admission = new Admission(SystemClock, {
      ...DEFAULT_ADMISSION_LIMITS,
      device: { maxInFlight: 1, maxInFlightPerClient: 1 },
    });
    const t = await start(admission);
    t.send(report(1, "t1")); // holds the only slot while its publish waits
    await eventually(() => (t.published.length === 1 ? true : undefined), "the first publish");
    t.send(report(2, "t2"));
    const refused = await eventually(
      () => t.device.got.find((p) => p.messageId === 2),
      "the answer to the second",
    );
    expect(refused.code).toBe("5.03");
    expect(refused.options.find((o) => o.name === "Max-Age")).toBeDefined();
    expect(refused.payload.toString()).toMatch(/RESOURCE_EXHAUSTED/);
    expect(t.published).toHaveLength(1);
    t.held[0]!();
    await eventually(() => t.device.got.find((p) => p.code === "2.04"), "the first report's 2.04");
  });
});
