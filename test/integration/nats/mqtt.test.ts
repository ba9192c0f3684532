import mqtt from "mqtt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { eventually, mqttUrl, type NatsNode, resetStream, startNatsNode } from "./harness.ts";

/**
 * A plain MQTT client — no Doppel code on the device — through nats-server's MQTT listener.
 * MQTT topic `doppel/dev/<type>/<id>/<channel>` is NATS subject `doppel.dev.<type>.<id>.<channel>`.
 */
describe("MQTT devices", () => {
  let n: NatsNode;
  let client: mqtt.MqttClient;
  beforeAll(async () => {
    await resetStream();
    n = await startNatsNode();
    client = await mqtt.connectAsync(mqttUrl(), {
      clientId: "thermostat-mq1",
      clean: true,
      reconnectPeriod: 0,
    });
  });
  afterAll(async () => {
    await client?.endAsync();
    await n?.stop();
    await resetStream();
  });

  it("reports state and receives desired state, end to end", async () => {
    const received: { topic: string; body: Record<string, unknown> }[] = [];
    client.on("message", (topic, payload) => received.push({ topic, body: JSON.parse(payload.toString()) }));
    await client.subscribeAsync("doppel/dev/thermostat/mq1/desired", { qos: 1 });

    // QoS 1 publish: stored by Doppel's JetStream stream, applied by the twin.
    await client.publishAsync(
      "doppel/dev/thermostat/mq1/reported",
      JSON.stringify({ temperature: 26, heating: false }),
      {
        qos: 1,
      },
    );
    const view = await eventually(async () => {
      const v = await n.client.getTwin({ type: "thermostat", id: "mq1" });
      return v.version > 0 ? v : undefined;
    }, "the MQTT report applied");
    expect(view.reported).toEqual({ temperature: 26, heating: false });

    // Desired state set by a service reaches the MQTT device.
    const after = await n.client.updateDesired({ type: "thermostat", id: "mq1" }, { heating: true });
    const push = await eventually(
      () => received.find((m) => m.body["version"] === after.version),
      "the desired push over MQTT",
    );
    expect(push.body).toMatchObject({ desired: { heating: true }, delta: { heating: true } });

    // MQTT has no request/reply: a message on .../sync is answered on .../desired.
    received.length = 0;
    await client.publishAsync("doppel/dev/thermostat/mq1/sync", "", { qos: 0 });
    const synced = await eventually(
      () => received.find((m) => "reported" in m.body),
      "the sync answer over MQTT",
    );
    expect(synced.body).toMatchObject({
      version: after.version,
      desired: { heating: true },
      reported: { temperature: 26, heating: false },
    });

    // Telemetry too.
    await client.publishAsync(
      "doppel/dev/thermostat/mq1/telemetry",
      JSON.stringify({ at: 1_000, metrics: { temperature: 26.1 } }),
      { qos: 1 },
    );
    await eventually(async () => {
      for await (const s of n.client.telemetry({ type: "thermostat", id: "mq1" }, { since: 0, until: 5_000 }))
        return s;
      return undefined;
    }, "MQTT telemetry stored");
  });

  it("applies a report stamped with $seq in its JSON once and in order: re-sends and overtaken reports are dropped", async () => {
    const topic = "doppel/dev/thermostat/mq3/reported";
    const publish = (body: object) => client.publishAsync(topic, JSON.stringify(body), { qos: 1 });
    await publish({ $seq: 5, temperature: 26 });
    await publish({ $seq: 5, temperature: 26 }); // the device's own re-send (MQTT has no message id)
    await publish({ $seq: 4, temperature: 1 }); // older than what was applied
    await publish({ $seq: 6, temperature: 28 });
    const view = await eventually(async () => {
      const v = await n.client.getTwin({ type: "thermostat", id: "mq3" });
      return v.reported["temperature"] === 28 ? v : undefined;
    }, "the last MQTT report applied");
    expect(view.reported).toEqual({ temperature: 28 });
    const events = await n.node.twins.history({ type: "thermostat", id: "mq3" }, { limit: 100 });
    expect(events.filter((e) => e.type === "$reported").map((e) => e.data["patch"])).toEqual([
      { temperature: 26 },
      { temperature: 28 },
    ]);
  });

  it("answers a command: the command arrives on .../cmd, the answer goes to .../cmd-result with the command's id", async () => {
    const device = await mqtt.connectAsync(mqttUrl(), {
      clientId: "pump-mq2",
      clean: true,
      reconnectPeriod: 0,
    });
    try {
      const commands: Record<string, unknown>[] = [];
      device.on("message", (topic, payload) => {
        if (topic !== "doppel/dev/pump/mq2/cmd") return;
        const command = JSON.parse(payload.toString()) as {
          command: string;
          args: { seconds: number };
          id: string;
        };
        commands.push(command);
        void device.publishAsync(
          "doppel/dev/pump/mq2/cmd-result",
          JSON.stringify({ id: command.id, result: { blinking: command.args.seconds } }),
          { qos: 0 },
        );
      });
      // QoS 0: a command is for a device that is there now (an offline device fails the call).
      await device.subscribeAsync("doppel/dev/pump/mq2/cmd", { qos: 0 });
      const answer = await n.client.invoke({ type: "pump", id: "mq2" }, "identify", { seconds: 4 });
      expect(answer.result).toEqual({ blinking: 4 });
      expect(commands).toMatchObject([{ command: "identify", args: { seconds: 4 } }]);
    } finally {
      await device.endAsync();
    }
    // Gone (clean session): the next command fails at once as offline.
    await expect(n.client.invoke({ type: "pump", id: "mq2" }, "identify", { seconds: 1 })).rejects.toThrow(
      "device pump/mq2 is offline",
    );
  });
});
