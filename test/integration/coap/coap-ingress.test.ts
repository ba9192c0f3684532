import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NatsTransport } from "../../../cluster/transport/nats.ts";
import { DeviceCredentials } from "../../../runtime/devices/auth/device-credentials.ts";
import { eventually, type NatsNode, natsUrl, resetStream, STREAM, startNatsNode } from "../nats/harness.ts";
import { coapObserve, coapRequest, packet, path, RawPeer, readDatagram } from "./coap-device.ts";

/**
 * CoAP ingress against a real nats-server: devices are node-coap clients in other processes
 * (fixtures/coap-device.mjs); reports go through the JetStream ingress stream like NATS devices'.
 */
describe("CoAP ingress (RFC 7252) on the JetStream ingress path", () => {
  let n: NatsNode;
  let coap: string;
  let dataDir: string;
  let credentials: DeviceCredentials;
  let c1: string;
  let raw: RawPeer;
  /** Each test device's password (from `provision`). */
  const passwords = new Map<string, string>();
  const credentialOf = (id: string) => passwords.get(id) ?? "";
  const q = (token: string, extra = "") => `?token=${token}${extra}`;

  beforeAll(async () => {
    await resetStream();
    dataDir = mkdtempSync(join(tmpdir(), "doppel-coap-"));
    credentials = new DeviceCredentials(join(dataDir, "device-credentials.json"));
    for (const id of ["c1", "c2", "c3", "o1", "o2", "o3", "o4", "f1"])
      passwords.set(id, credentials.provision({ type: "thermostat", id }).password);
    c1 = credentialOf("c1");
    n = await startNatsNode({
      config: {
        dataDir,
        limits: { maxPayloadBytes: 512 },
        metrics: { listen: "127.0.0.1:0" },
        coap: { listen: "127.0.0.1:0", requireCredentials: true, maxObservers: 4, maxObserversPerDevice: 2 },
      },
    });
    coap = n.node.coap!.address;
    raw = await RawPeer.open();
  });
  afterAll(async () => {
    await raw?.close();
    await n?.stop();
    await resetStream();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  const twin = (id: string) => n.client.getTwin({ type: "thermostat", id });

  it("a device in another process reports state (JSON) and telemetry (CBOR); the twin shows both", async () => {
    const reported = await coapRequest(coap, "POST", `/v1/thermostat/c1/reported${q(c1)}`, {
      payload: { temperature: 17.5, heating: false },
    });
    expect(reported.code).toBe("2.04");
    const view = await eventually(async () => {
      const v = await twin("c1");
      return v.reported["temperature"] === 17.5 ? v : undefined;
    }, "c1's report on the twin");
    expect(view.reported).toEqual({ temperature: 17.5, heating: false });

    const telemetry = await coapRequest(coap, "POST", `/v1/thermostat/c1/telemetry${q(c1)}`, {
      format: "cbor",
      payload: { at: 5_000, metrics: { temperature: 17.6 } },
    });
    expect(telemetry.code).toBe("2.01");
    const samples = await eventually(async () => {
      const got = [];
      for await (const s of n.client.telemetry({ type: "thermostat", id: "c1" }, { since: 0, until: 10_000 }))
        got.push(s);
      return got.length === 1 ? got : undefined;
    }, "c1's telemetry sample");
    expect(samples[0]?.at).toBe(5_000);
    expect(samples[0]?.metrics["temperature"]).toBe(17.6);
  });

  it("takes Doppel-Seq from ?seq=: a report at or below the twin's mark is acknowledged and not applied", async () => {
    const path = `/v1/thermostat/c1/reported${q(c1, "&seq=100")}`;
    expect((await coapRequest(coap, "POST", path, { payload: { temperature: 20 } })).code).toBe("2.04");
    await eventually(
      async () => ((await twin("c1")).reported["temperature"] === 20 ? true : undefined),
      "seq 100",
    );
    const stale = n.node.ingress.stats.stale;
    expect((await coapRequest(coap, "POST", path, { payload: { temperature: 99 } })).code).toBe("2.04");
    await eventually(
      () => (n.node.ingress.stats.stale > stale ? true : undefined),
      "the stale report processed",
    );
    expect((await twin("c1")).reported["temperature"]).toBe(20);
  });

  it("observes desired state: the current state first, then a push after UpdateDesired", async () => {
    const observer = coapObserve(coap, `/v1/thermostat/c1/desired${q(c1)}`);
    try {
      const first = await eventually(() => observer.lines[0], "the first notification");
      expect(first.code).toBe("2.05");
      const firstVersion = (first.payload as { version: number }).version;
      const heating = !(first.payload as { desired: { heating?: boolean } }).desired.heating;
      const updated = await n.client.updateDesired({ type: "thermostat", id: "c1" }, { heating });
      const pushed = await eventually(
        () => observer.lines.find((l) => (l.payload as { version?: number }).version === updated.version),
        "the desired push",
      );
      expect((pushed.payload as { desired: unknown }).desired).toEqual(updated.desired);
      expect(pushed.code).toBe("2.05");
      expect((pushed.payload as { version: number }).version).toBeGreaterThan(firstVersion);
      expect(pushed.observe).toBeGreaterThan(first.observe ?? 0);
    } finally {
      await observer.close();
    }
    expect(observer.lines.at(-1)).toMatchObject({ deregistered: true });
    expect(n.node.coap!.observers).toBe(0);
  });

  it("acknowledges a confirmable report only once it is durable: no 2.04 while the stream stores nothing", async () => {
    const admin = await NatsTransport.connect({ servers: natsUrl() });
    const jsm = await jetstreamManager(admin.connection);
    const config = (await jsm.streams.info(STREAM)).config;
    try {
      // The stream stops capturing device reports (a publish finds no stream: nothing is stored).
      await jsm.streams.update(STREAM, { ...config, subjects: ["doppel.dev.*.*.parked"] });
      const refused = await coapRequest(coap, "POST", `/v1/thermostat/c2/reported${q(credentialOf("c2"))}`, {
        payload: { temperature: 30.5 },
      });
      expect(refused.code).toBe("5.03");
      expect(refused.maxAge).toBeGreaterThanOrEqual(1);
      expect(String(refused.payload)).toMatch(/ingress stream/);
      await expect(twin("c2")).rejects.toThrow(/NOT_FOUND|not found/i);
    } finally {
      await jsm.streams.update(STREAM, config);
      await admin.close();
    }
    const stored = await coapRequest(coap, "POST", `/v1/thermostat/c2/reported${q(credentialOf("c2"))}`, {
      payload: { temperature: 30.5 },
    });
    expect(stored.code).toBe("2.04");
    await eventually(
      async () => ((await twin("c2")).reported["temperature"] === 30.5 ? true : undefined),
      "c2",
    );
  });

  it("refuses without a valid credential: none, wrong, another device's, revoked", async () => {
    const path = "/v1/thermostat/c3/reported";
    const body = { payload: { temperature: 1 } };
    const none = await coapRequest(coap, "POST", path, body);
    expect(none.code).toBe("4.01");
    expect(String(none.payload)).toMatch(/missing credential/);
    expect((await coapRequest(coap, "POST", `${path}${q("dpd_wrong")}`, body)).code).toBe("4.01");
    expect((await coapRequest(coap, "POST", `${path}${q(c1)}`, body)).code).toBe("4.01"); // c1's, not c3's
    credentials.revoke({ type: "thermostat", id: "c3" });
    const revoked = await coapRequest(coap, "POST", `${path}${q(credentialOf("c3"))}`, body);
    expect(revoked.code).toBe("4.03");
    expect((await coapRequest(coap, "GET", `/v1/thermostat/c3/desired`, { format: "none" })).code).toBe(
      "4.01",
    );
    await expect(twin("c3")).rejects.toThrow();
    expect(n.node.coap!.stats.unauthorized).toBeGreaterThanOrEqual(5);
    const scraped = await (await fetch(`http://${n.node.metricsAddress}/metrics`)).text();
    expect(scraped).toMatch(/doppel_coap_total\{[^}]*outcome="unauthorized"[^}]*\} ([5-9]|\d\d)/);
    expect(scraped).toMatch(/doppel_coap_total\{[^}]*outcome="stored"[^}]*\} [1-9]/);
  });

  it("answers bad requests with CoAP codes and a diagnostic", async () => {
    const ok = q(c1);
    const cases: [string, Promise<{ code?: string; payload?: unknown }>, RegExp][] = [
      ["4.04", coapRequest(coap, "POST", `/v2/thermostat/c1/reported${ok}`, { payload: {} }), /NOT_FOUND/],
      [
        "4.04",
        coapRequest(coap, "POST", `/v1/boiler/c1/reported${ok}`, { payload: {} }),
        /no twin type 'boiler'/,
      ],
      [
        "4.00",
        coapRequest(coap, "POST", `/v1/thermostat/bad.id/reported${ok}`, { payload: {} }),
        /INVALID_ARGUMENT/,
      ],
      [
        "4.00",
        coapRequest(coap, "POST", `/v1/thermostat/c1/reported${ok}`, { payload: { temperature: "hot" } }),
        /temperature/,
      ],
      [
        "4.00",
        coapRequest(coap, "POST", `/v1/thermostat/c1/reported${ok}&seq=0`, { payload: { temperature: 1 } }),
        /Doppel-Seq/,
      ],
      [
        "4.00",
        coapRequest(coap, "POST", `/v1/thermostat/c1/reported${ok}&colour=red`, { payload: {} }),
        /unknown query parameter/,
      ],
      [
        "4.00",
        coapRequest(coap, "POST", `/v1/thermostat/c1/telemetry${ok}`, { payload: { samples: [] } }),
        /1 to 1000 samples/,
      ],
      [
        "4.13",
        coapRequest(coap, "POST", `/v1/thermostat/c1/reported${ok}`, { payload: { pad: "x".repeat(600) } }),
        /limit is 512/,
      ],
      ["4.05", coapRequest(coap, "PUT", `/v1/thermostat/c1/reported${ok}`, { payload: {} }), /use POST/],
    ];
    for (const [code, response, diagnostic] of cases) {
      const got = await response;
      expect({ code: got.code, diagnostic: diagnostic.test(String(got.payload)), got }).toMatchObject({
        code,
        diagnostic: true,
      });
    }
  });

  const reportPath = (id: string, token: string) => [
    ...path("v1", "thermostat", id, "reported"),
    { name: "Uri-Query", value: Buffer.from(`token=${token}`) },
  ];
  const reply = (messageId: number) =>
    eventually(() => raw.replies(messageId)[0], `a reply to message ${messageId}`).then(readDatagram);
  /**
   * Sends a confirmable request and retransmits it (same message id, as CoAP clients do) until it
   * is answered: a datagram can be dropped by a full socket buffer, e.g. right after a flood.
   */
  const ask = (datagram: Buffer) => {
    const messageId = datagram.readUInt16BE(2);
    let sent = 0;
    return eventually(() => {
      if (sent++ % 25 === 0) raw.send(coap, datagram);
      return raw.replies(messageId)[0];
    }, `a reply to message ${messageId}`).then(readDatagram);
  };

  it("answers malformed datagrams with CoAP codes (or a Reset) and keeps serving", async () => {
    let id = 1000;
    const expectations: [number, Buffer, string][] = [];
    const add = (datagram: Buffer, code: string) => expectations.push([id, datagram, code]);
    const body = Buffer.from(JSON.stringify({ temperature: 21 }));
    // Content-Format 42 (octet-stream): 4.15.
    add(
      packet(id, [...reportPath("c1", c1), { name: "Content-Format", value: Buffer.from([42]) }], body),
      "4.15",
    );
    id++;
    // Not JSON, not CBOR.
    add(packet(id, reportPath("c1", c1), Buffer.from("{temperature: 21")), "4.00");
    id++;
    add(
      packet(
        id,
        [...reportPath("c1", c1), { name: "Content-Format", value: Buffer.from([60]) }],
        Buffer.from([0xbf, 0x61]),
      ),
      "4.00",
    );
    id++;
    // CBOR that is not JSON (a byte string).
    add(
      packet(
        id,
        [...reportPath("c1", c1), { name: "Content-Format", value: Buffer.from([60]) }],
        Buffer.from([0xa1, 0x61, 0x74, 0x42, 1, 2]),
      ),
      "4.00",
    );
    id++;
    // Block-wise transfer: refused, nothing reassembled.
    add(
      packet(id, [...reportPath("c1", c1), { name: "Block1", value: Buffer.from([0xff, 0xff, 0x06]) }], body),
      "4.13",
    );
    id++;
    // An unknown critical option (65001).
    add(packet(id, [...reportPath("c1", c1), { name: "65001", value: Buffer.from("x") }], body), "4.02");
    id++;
    // A datagram larger than the payload limit allows.
    add(
      Buffer.concat([packet(id, reportPath("c1", c1)), Buffer.from([0xff]), Buffer.alloc(9000, 0x20)]),
      "4.13",
    );
    id++;
    // Option delta 15 (reserved) after a valid header: bad option.
    add(Buffer.from([0x40, 0x02, (id >> 8) & 0xff, id & 0xff, 0xf1, 0x00]), "4.02");
    id++;
    // A confirmable message whose token length is over 8: a Reset.
    add(Buffer.from([0x49, 0x02, (id >> 8) & 0xff, id & 0xff, 1, 2]), "0.00");
    id++;
    for (const [, datagram] of expectations) raw.send(coap, datagram);
    for (const [messageId, , code] of expectations)
      expect({ messageId, code: (await reply(messageId)).code }).toEqual({ messageId, code });

    // Random bytes and mutated requests: whatever comes back, nothing crashes.
    let seed = 42;
    const random = () => {
      seed ^= seed << 13;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      return (seed >>> 0) / 2 ** 32;
    };
    const valid = packet(1, reportPath("c1", c1), body);
    for (let i = 0; i < 600; i++) {
      let datagram: Buffer;
      if (i % 3 === 0)
        datagram = Buffer.from(
          Array.from({ length: Math.floor(random() * 64) }, () => Math.floor(random() * 256)),
        );
      else {
        datagram = Buffer.from(valid.subarray(0, Math.max(1, Math.floor(random() * valid.length) + (i % 2))));
        for (let k = 0; k < 3; k++)
          datagram[Math.floor(random() * datagram.length)] = Math.floor(random() * 256);
      }
      raw.send(coap, datagram);
    }
    // The node keeps serving: a marker request after the flood is answered, and a real client's report is stored.
    const marker = packet(
      4242,
      [
        ...path("v1", "thermostat", "c1", "desired"),
        { name: "Uri-Query", value: Buffer.from(`token=${c1}`) },
      ],
      Buffer.alloc(0),
      "0.01",
    );
    expect((await ask(marker)).code).toBe("2.05");
    expect(n.node.coap!.stats.screened).toBeGreaterThan(0);
    const after = await coapRequest(coap, "POST", `/v1/thermostat/f1/reported${q(credentialOf("f1"))}`, {
      payload: { temperature: 12 },
    });
    expect(after.code).toBe("2.04");
  });

  it("bounds observers: per device the newest two, on the node four; beyond that 5.03 with Max-Age", async () => {
    const observe = (messageId: number, id: string) =>
      packet(
        messageId,
        [
          { name: "Observe", value: Buffer.alloc(0) },
          ...path("v1", "thermostat", id, "desired"),
          { name: "Uri-Query", value: Buffer.from(`token=${credentialOf(id)}`) },
        ],
        Buffer.alloc(0),
        "0.01",
      );
    // Three registrations of o1 (distinct tokens): the oldest is ended, two remain.
    for (const messageId of [2001, 2002, 2003])
      expect((await ask(observe(messageId, "o1"))).code).toBe("2.05");
    expect(n.node.coap!.observers).toBe(2);
    for (const [messageId, id] of [
      [2004, "o2"],
      [2005, "o3"],
    ] as const)
      expect((await ask(observe(messageId, id))).code).toBe("2.05");
    expect(n.node.coap!.observers).toBe(4);
    const full = await ask(observe(2006, "o4"));
    expect(full.code).toBe("5.03");
    expect(full.payload).toMatch(/CoAP observers/);
    expect(n.node.coap!.observers).toBe(4);
  });
});
