/**
 * The edge MQTT tests' device: `fixtures/mqtt-device.mjs` (MQTT.js, no Doppel code) spawned as
 * another process, driven over its stdin, its outcomes read from its stdout.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";

const SCRIPT = fileURLToPath(new URL("./fixtures/mqtt-device.mjs", import.meta.url));
const ROOT = fileURLToPath(new URL("../../..", import.meta.url));

/** One printed line of the device process. */
export interface MqttLine {
  readonly connected?: boolean;
  readonly subscribed?: string;
  readonly acked?: number;
  readonly failed?: number;
  readonly error?: string;
  readonly topic?: string;
  readonly payload?: string;
}

export interface MqttDevice {
  /** Every line printed so far, in order. */
  readonly lines: readonly MqttLine[];
  /** The messages received on `topic`, their payloads parsed as JSON. */
  received(topic: string): Record<string, unknown>[];
  subscribe(topic: string, qos: 0 | 1): Promise<void>;
  /** Publishes; resolves once the server's PUBACK came (QoS 1), rejects when the client failed. */
  publish(topic: string, payload: string, qos: 0 | 1): Promise<void>;
  close(): Promise<void>;
}

/** Starts a device process connected to `url` as `clientId` (clean session). */
export async function startMqttDevice(url: string, clientId: string): Promise<MqttDevice> {
  const child: ChildProcess = spawn("node", [SCRIPT, url, clientId], {
    cwd: ROOT,
    stdio: ["pipe", "pipe", "inherit"],
  });
  const lines: MqttLine[] = [];
  const waiters = new Set<{ match: (line: MqttLine) => boolean; resolve: (line: MqttLine) => void }>();
  let exitedWith: string | undefined;
  const failWaiters = new Set<(error: Error) => void>();
  let buffered = "";
  child.stdout?.on("data", (chunk: Buffer) => {
    buffered += chunk.toString("utf8");
    let at = buffered.indexOf("\n");
    while (at >= 0) {
      const line = JSON.parse(buffered.slice(0, at)) as MqttLine;
      buffered = buffered.slice(at + 1);
      at = buffered.indexOf("\n");
      lines.push(line);
      for (const waiter of waiters) {
        if (!waiter.match(line)) continue;
        waiters.delete(waiter);
        waiter.resolve(line);
      }
    }
  });
  const exited = new Promise<void>((resolve) =>
    child.once("exit", (code) => {
      exitedWith = `the MQTT device process exited (code ${code}): ${JSON.stringify(lines.slice(-3))}`;
      for (const fail of failWaiters) fail(new Error(exitedWith));
      resolve();
    }),
  );
  const next = (match: (line: MqttLine) => boolean) =>
    new Promise<MqttLine>((resolve, reject) => {
      const seen = lines.find(match);
      if (seen) return resolve(seen);
      if (exitedWith) return reject(new Error(exitedWith));
      const fail = (error: Error) => reject(error);
      failWaiters.add(fail);
      waiters.add({
        match,
        resolve: (line) => {
          failWaiters.delete(fail);
          resolve(line);
        },
      });
    });
  const send = (command: object) => child.stdin?.write(`${JSON.stringify(command)}\n`);
  let tags = 0;
  await next((line) => line.connected === true || line.error !== undefined);
  const connectError = lines.find((line) => line.error !== undefined);
  if (connectError) throw new Error(`the MQTT device did not connect: ${connectError.error}`);
  return {
    lines,
    received: (topic) =>
      lines
        .filter((line) => line.topic === topic)
        .map((line) => JSON.parse(line.payload ?? "null") as Record<string, unknown>),
    async subscribe(topic, qos) {
      send({ op: "sub", topic, qos });
      await next((line) => line.subscribed === topic);
    },
    async publish(topic, payload, qos) {
      const tag = ++tags;
      send({ op: "pub", topic, payload, qos, tag });
      const outcome = await next((line) => line.acked === tag || line.failed === tag);
      if (outcome.failed === tag) throw new Error(`MQTT publish ${tag} failed: ${outcome.error}`);
    },
    async close() {
      child.stdin?.end();
      await exited;
    },
  };
}
