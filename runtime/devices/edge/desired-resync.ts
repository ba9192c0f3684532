/**
 * Desired state after an outage of the leaf link. The cloud pushes desired changes as core NATS
 * messages, which have no route to the edge while the link is down, so a change made in the cloud
 * during an outage would only reach an edge device at its next `sync`. The edge node remembers the
 * devices that report through it and the last desired push each got; when the link comes back it
 * asks the cloud (`sync`, across the link) for each of them and pushes, on the device's `desired`
 * subject at the edge, every desired state that differs from what the device was last pushed.
 * Devices of a thick edge's own twin types (`localTypes`) are left out: their twins run at the edge,
 * whose node pushes their desired state itself.
 */
import type { NatsConnection, Subscription } from "@nats-io/nats-core";
import { refKey, type TwinRef } from "../../core/ids.ts";
import type { Logger } from "../../observability/logger.ts";
import {
  DEVICE_PREFIX,
  type DesiredPush,
  DeviceChannel,
  deviceSubject,
  deviceWildcard,
  encodeJson,
  parseDeviceSubject,
} from "../protocol.ts";

/** Most devices remembered; beyond it the one heard from least recently is forgotten. */
const MAX_DEVICES = 100_000;
/** Sync requests in flight at once after the link returns. */
const CONCURRENCY = 16;

interface Known {
  readonly ref: TwinRef;
  /** The desired state last pushed to it (JSON text), if any push was seen. */
  pushed: string | undefined;
}

export class DesiredResync {
  readonly #nc: NatsConnection;
  readonly #logger: Logger;
  readonly #timeoutMs: number;
  readonly #devices = new Map<string, Known>();
  readonly #localTypes: ReadonlySet<string>;
  readonly #subs: Subscription[] = [];
  #linkUp: boolean | undefined;
  #running: Promise<void> | undefined;
  /** Desired pushes re-sent after outages. */
  repushed = 0;

  constructor(
    nc: NatsConnection,
    options: { readonly logger: Logger; readonly timeoutMs: number; readonly localTypes?: readonly string[] },
  ) {
    this.#nc = nc;
    this.#localTypes = new Set(options.localTypes ?? []);
    this.#logger = options.logger;
    this.#timeoutMs = options.timeoutMs;
  }

  /** Starts learning devices (from their reports and telemetry) and the pushes they get. */
  start(): void {
    for (const channel of [DeviceChannel.Reported, DeviceChannel.Telemetry]) {
      this.#subs.push(
        this.#nc.subscribe(deviceWildcard(channel), {
          callback: (_error, message) => {
            this.#known(message.subject);
          },
        }),
      );
    }
    this.#subs.push(
      this.#nc.subscribe(deviceWildcard(DeviceChannel.Desired), {
        callback: (_error, message) => {
          const known = this.#known(message.subject);
          if (!known) return;
          try {
            known.pushed = JSON.stringify((message.json() as DesiredPush).desired);
          } catch {
            // Not a push this resync understands: the next resync pushes again.
          }
        },
      }),
    );
  }

  #known(subject: string): Known | undefined {
    if (!subject.startsWith(`${DEVICE_PREFIX}.`)) return undefined;
    let ref: TwinRef;
    try {
      ref = parseDeviceSubject(subject).ref;
    } catch {
      return undefined;
    }
    if (this.#localTypes.has(ref.type)) return undefined;
    const key = refKey(ref);
    const known = this.#devices.get(key) ?? { ref, pushed: undefined };
    this.#devices.delete(key);
    this.#devices.set(key, known);
    if (this.#devices.size > MAX_DEVICES) {
      const oldest = this.#devices.keys().next().value;
      if (oldest !== undefined) this.#devices.delete(oldest);
    }
    return known;
  }

  /** Tells it the link's state (every tick); a return after it was down starts a resync. */
  linkIs(up: boolean): void {
    const wasDown = this.#linkUp === false;
    this.#linkUp = up;
    if (up && wasDown && !this.#running) {
      this.#running = this.resync().finally(() => {
        this.#running = undefined;
      });
    }
  }

  /** Asks the cloud for the desired state of every known device and pushes what changed. */
  async resync(): Promise<void> {
    const devices = [...this.#devices.values()];
    let next = 0;
    const worker = async () => {
      while (next < devices.length) {
        const known = devices[next++]!;
        try {
          const reply = await this.#nc.request(
            deviceSubject(known.ref, DeviceChannel.Sync),
            new Uint8Array(),
            {
              timeout: this.#timeoutMs,
            },
          );
          const state = reply.json() as DesiredPush & { error?: unknown };
          if (state.error !== undefined || typeof state.version !== "number") continue;
          const desired = JSON.stringify(state.desired ?? {});
          if (desired === (known.pushed ?? "{}")) continue;
          const push: DesiredPush = { version: state.version, desired: state.desired, delta: state.delta };
          this.#nc.publish(deviceSubject(known.ref, DeviceChannel.Desired), encodeJson(push));
          known.pushed = desired;
          this.repushed++;
        } catch (error) {
          this.#logger.warn(
            { device: refKey(known.ref), err: error },
            "edge: desired resync failed for a device",
          );
        }
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  }

  async stop(): Promise<void> {
    for (const sub of this.#subs) sub.unsubscribe();
    await this.#running;
  }
}
