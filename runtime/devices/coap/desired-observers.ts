/**
 * CoAP observers of desired state (RFC 7641), bounded: at most `maxPerDevice` observations of one
 * twin (a new one ends the oldest, so a device that rebooted onto a new port is not locked out by
 * its dead registration) and `maxTotal` on the node (beyond it a registration is refused with
 * `RESOURCE_EXHAUSTED`, 5.03). One subscription per observed twin on its `desired` subject carries
 * the pushes of every node; each observer is sent only versions above the last it got, so the
 * initial state and a push racing it never go out of order.
 */
import type { Subscription, Transport } from "../../../cluster/transport/transport.ts";
import { ResourceExhausted } from "../../core/errors.ts";
import { refKey, type TwinRef } from "../../core/ids.ts";
import { DEFAULT_JSON_LIMITS } from "../../core/json.ts";
import type { Logger } from "../../observability/logger.ts";
import { type DesiredPush, DeviceChannel, decodeJsonPayload, deviceSubject } from "../protocol.ts";

/** One observation: how to send it a notification and how to end it. */
export interface Observation {
  /** Peer address, port and token: the identity of the registration (RFC 7641 §3.1). */
  readonly key: string;
  /** Sends a notification (the observation keeps its own order). */
  notify(push: DesiredPush): void;
  /** Ends the observation (the client is told, if it still listens). */
  end(): void;
}

interface Observed {
  readonly sub: Subscription;
  readonly observers: Map<string, { observation: Observation; lastVersion: number }>;
}

export class DesiredObservers {
  readonly #twins = new Map<string, Observed>();
  #total = 0;

  constructor(
    private readonly transport: Transport,
    private readonly maxTotal: number,
    private readonly maxPerDevice: number,
    private readonly logger: Logger,
  ) {}

  /** Observations open now. */
  get size(): number {
    return this.#total;
  }

  /**
   * Registers an observation of `ref` (replacing one with the same key). Refused with
   * `RESOURCE_EXHAUSTED` when the node holds `maxTotal`. Returns `deliver`, to hand it the state
   * read after subscribing (sent unless a newer push went first).
   */
  add(ref: TwinRef, observation: Observation): { deliver(push: DesiredPush): void } {
    const device = refKey(ref);
    const twin = this.#twins.get(device) ?? this.#subscribe(ref, device);
    this.#end(device, observation.key); // a re-registration replaces the earlier one
    if (this.#total >= this.maxTotal) {
      this.#dropIfEmpty(device, twin);
      throw new ResourceExhausted(
        `the node has ${this.maxTotal} CoAP observers of desired state; retry later`,
        { retryAfterMs: 30_000, limit: "coap-observers" },
      );
    }
    while (twin.observers.size >= this.maxPerDevice) {
      const oldest = twin.observers.keys().next().value;
      if (oldest === undefined) break;
      this.#end(device, oldest);
    }
    const entry = { observation, lastVersion: -1 };
    twin.observers.set(observation.key, entry);
    this.#total++;
    return { deliver: (push) => this.#send(entry, push) };
  }

  /**
   * Forgets an observation (the client cancelled it, or it failed); ends nothing. With
   * `observation`, only if that is the one registered under `key` (not a later re-registration).
   */
  remove(ref: TwinRef, key: string, observation?: Observation): void {
    const device = refKey(ref);
    const twin = this.#twins.get(device);
    const entry = twin?.observers.get(key);
    if (!twin || !entry || (observation !== undefined && entry.observation !== observation)) return;
    twin.observers.delete(key);
    this.#total--;
    this.#dropIfEmpty(device, twin);
  }

  /** Ends every observation (the node stops). */
  close(): void {
    for (const [device, twin] of [...this.#twins]) {
      for (const key of [...twin.observers.keys()]) this.#end(device, key);
    }
  }

  #end(device: string, key: string): void {
    const twin = this.#twins.get(device);
    const entry = twin?.observers.get(key);
    if (!twin || !entry) return;
    twin.observers.delete(key);
    this.#total--;
    this.#dropIfEmpty(device, twin);
    try {
      entry.observation.end();
    } catch {
      // The client is gone already.
    }
  }

  #send(entry: { observation: Observation; lastVersion: number }, push: DesiredPush): void {
    if (push.version <= entry.lastVersion) return;
    entry.lastVersion = push.version;
    try {
      entry.observation.notify(push);
    } catch (error) {
      this.logger.debug({ err: error }, "CoAP notification not sent");
    }
  }

  #subscribe(ref: TwinRef, device: string): Observed {
    const observers: Observed["observers"] = new Map();
    const sub = this.transport.subscribe(deviceSubject(ref, DeviceChannel.Desired), (message) => {
      let push: DesiredPush;
      try {
        push = decodeJsonPayload(message.data, "desired push", DEFAULT_JSON_LIMITS) as unknown as DesiredPush;
      } catch {
        return;
      }
      if (typeof push.version !== "number") return;
      for (const entry of [...observers.values()]) this.#send(entry, push);
    });
    const twin = { sub, observers };
    this.#twins.set(device, twin);
    return twin;
  }

  #dropIfEmpty(device: string, twin: Observed): void {
    if (twin.observers.size > 0) return;
    twin.sub.unsubscribe();
    this.#twins.delete(device);
  }
}
