import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { DoppelNode, EdgeNode, NatsTransport } from "doppel/node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { main } from "../../../runtime/cli/main.ts";
import { silentLogger } from "../../../runtime/observability/logger.ts";
import { freePort } from "../../../runtime/testing/free-port.ts";
import { Thermostat } from "../../../twins/thermostat.ts";
import { reportedValue, reportOf } from "../chaos/exactly-once.ts";
import { eventually } from "../nats/harness.ts";
import {
  cloudNodeConfig,
  cutLink,
  edgeNodeConfig,
  HUB_DOMAIN,
  LEAF_USER,
  type LinkRelay,
  linkUp,
  type NatsProcess,
  restoreLink,
  startHub,
  startLeafFromConfig,
  startRelay,
} from "./edge-servers.ts";
import { type MqttDevice, startMqttDevice } from "./mqtt-device.ts";

const EDGE = "plant-m";
/** A small outage buffer, so the second test can fill it. */
const MAX_BYTES = 16 * 1024;

/**
 * MQTT devices at a thin edge: the leaf server is configured by `doppel edge leaf-config --mqtt`,
 * and an MQTT.js client in another process (no Doppel code) talks to its MQTT listener exactly as
 * it would to the cloud's: QoS 1 reports published while the leaf link is cut reach the cloud
 * twin after it returns, once each and in order, and a desired change made in the cloud reaches
 * the device. The second test shows what nats-server's PUBACK means: it does not wait for the
 * stream that takes the subject (the edge stream), so a report the full edge stream refused is
 * still PUBACKed and never reaches the cloud.
 */
describe("MQTT devices at a thin edge", () => {
  let dir: string;
  let hub: NatsProcess & { leafPort: number };
  let relay: LinkRelay;
  let leaf: NatsProcess;
  let mqttUrl: string;
  let cloud: DoppelNode;
  let edge: EdgeNode;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "doppel-edge-mqtt-"));
    hub = await startHub(dir);
    relay = await startRelay(hub.leafPort);
    const [port, mqttPort] = [await freePort(), await freePort()];
    const upstream = new URL(relay.url);
    upstream.username = LEAF_USER.user;
    upstream.password = LEAF_USER.pass;
    // The leaf server's configuration exactly as docs/edge.md writes it: the CLI's output.
    let config = "";
    const code = await main(
      [
        "edge",
        "leaf-config",
        "--edge",
        EDGE,
        "--upstream",
        upstream.toString(),
        "--listen",
        `127.0.0.1:${port}`,
        "--store-dir",
        join(dir, "leaf-js"),
        "--mqtt",
        `127.0.0.1:${mqttPort}`,
      ],
      { out: (line) => (config += `${line}\n`), err: (text) => console.error(text) },
    );
    expect(code).toBe(0);
    expect(config).toContain(`mqtt { listen: "127.0.0.1:${mqttPort}" }`);
    leaf = await startLeafFromConfig(dir, EDGE, config, port);
    mqttUrl = `mqtt://127.0.0.1:${mqttPort}`;
    cloud = await DoppelNode.start(cloudNodeConfig("cloud-m", hub), {
      twins: [Thermostat],
      logger: silentLogger(),
    });
    edge = await EdgeNode.start(
      edgeNodeConfig("edge-m", leaf, {
        name: EDGE,
        hubDomain: HUB_DOMAIN,
        tick: "200ms",
        buffer: { maxBytes: MAX_BYTES, discard: "new" },
      }),
      { logger: silentLogger(), twins: [Thermostat] },
    );
  });
  afterAll(async () => {
    await edge?.stop();
    await cloud?.stop();
    await leaf?.stop();
    await relay?.stop();
    await hub?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** The values (see `reportOf`) of the reports the cloud twin applied, in order. */
  const applied = async (id: string) =>
    (await cloud.twins.history({ type: "thermostat", id }, { limit: 10_000 }))
      .filter((e) => e.type === "$reported")
      .map((e) => reportedValue((e.data["patch"] as { temperature?: unknown }).temperature));

  /** An MQTT 3.1.1 report: no headers, so the device's sequence number goes in the JSON as `$seq`. */
  const report = (value: number) => JSON.stringify({ $seq: value, ...reportOf(value) });

  it("QoS 1 reports acknowledged during an outage reach the cloud twin once each, in order; a desired change in the cloud reaches the device", async () => {
    const id = "mq-e1";
    const topic = `doppel/dev/thermostat/${id}`;
    await linkUp(edge);
    const device: MqttDevice = await startMqttDevice(mqttUrl, `thermostat-${id}`);
    try {
      await device.subscribe(`${topic}/desired`, 1);
      await device.publish(`${topic}/reported`, report(1), 1);
      await eventually(
        async () => ((await applied(id)).at(-1) === 1 ? true : undefined),
        "the first report in the cloud twin",
        60_000,
      );

      await cutLink(relay, edge);
      const acked = [1];
      for (let value = 2; value <= 40; value++) {
        await device.publish(`${topic}/reported`, report(value), 1);
        acked.push(value);
      }
      // Held at the edge: the cloud twin has only what came before the outage.
      await eventually(
        () => (edge.status.backlog >= 39 ? true : undefined),
        "the backlog at the edge",
        30_000,
      );
      expect(await applied(id)).toEqual([1]);

      await restoreLink(relay, edge);
      await eventually(
        async () => ((await applied(id)).length === acked.length ? true : undefined),
        "every acknowledged report in the cloud twin",
        120_000,
      );
      expect(await applied(id)).toEqual(acked);

      // Desired state set in the cloud crosses the leaf link to the MQTT subscriber at the edge.
      const after = await cloud.twins.updateDesired({ type: "thermostat", id }, { heating: false });
      const push = await eventually(
        () => device.received(`${topic}/desired`).find((body) => body["version"] === after.version),
        "the desired push at the MQTT device",
        60_000,
      );
      expect(push).toMatchObject({ desired: { heating: false } });
    } finally {
      await device.close();
    }
  }, 300_000);

  it("a PUBACK does not mean stored at the edge: with the edge stream full, a QoS 1 report is PUBACKed and lost", async () => {
    const id = "mq-e2";
    const topic = `doppel/dev/thermostat/${id}`;
    await linkUp(edge);
    await eventually(() => (edge.status.backlog === 0 ? true : undefined), "an empty edge stream", 60_000);
    const wire = await NatsTransport.connect({ servers: leaf.url, name: "edge-mqtt-test" });
    const device = await startMqttDevice(mqttUrl, `thermostat-${id}`);
    try {
      await cutLink(relay, edge);
      // Fill the edge stream (discard new) with reports of a device whose subject is shorter than
      // the MQTT device's and whose body is shorter than its report: once one is refused, the
      // MQTT device's report (longer subject, longer body, nats-server's MQTT header) cannot fit.
      const js = jetstream(wire.connection);
      const pad = "doppel.dev.thermostat.mq-p.reported";
      const body = JSON.stringify(reportOf(1));
      expect(body.length).toBeLessThan(report(1).length);
      let stored = 0;
      let refusal: Error | undefined;
      while (!refusal && stored < 5000) {
        try {
          await js.publish(pad, body);
          stored++;
        } catch (error) {
          refusal = error as Error;
        }
      }
      expect(refusal?.message).toMatch(/maximum bytes exceeded/);
      const jsm = await jetstreamManager(wire.connection);
      const before = (await jsm.streams.info("DOPPEL_EDGE")).state.last_seq;

      // The MQTT device gets its PUBACK all the same.
      await device.publish(`${topic}/reported`, report(1), 1);
      // A JetStream publish after it is answered once the stream handled the MQTT message before
      // it (one inbound queue per stream): still refused, and the stream stored nothing new.
      await expect(js.publish(pad, body)).rejects.toThrow(/maximum bytes exceeded/);
      expect((await jsm.streams.info("DOPPEL_EDGE")).state.last_seq).toBe(before);

      await restoreLink(relay, edge);
      await eventually(
        async () => ((await applied("mq-p")).length === stored ? true : undefined),
        "every stored report in the cloud",
        120_000,
      );
      await eventually(() => (edge.status.backlog === 0 ? true : undefined), "the backlog drained", 60_000);
      // Everything the edge stored reached the cloud; the PUBACKed MQTT report was never stored.
      expect(await applied(id)).toEqual([]);
    } finally {
      await device.close();
      await wire.close();
    }
  }, 300_000);
});
