/**
 * A fleet of simulated devices: each one a {@link DeviceClient} driving a {@link DeviceModel},
 * reporting at a fixed interval (with jitter), following desired state, answering commands.
 */
import type { Transport } from "../../cluster/transport/transport.ts";
import { DoppelError } from "../core/errors.ts";
import { DeviceClient } from "../devices/client/device-client.ts";
import type { DeviceModel, SimulatedDevice } from "./device-model.ts";

export interface FleetOptions {
  readonly transport: Transport;
  readonly models: readonly DeviceModel[];
  /** Number of devices, spread round-robin over the models. */
  readonly devices: number;
  /** Time between two reports of one device. */
  readonly intervalMs: number;
  /** Prefix of device ids (`<prefix><type>-<n>`). */
  readonly idPrefix?: string;
  /** Called with each error a device meets. */
  readonly onError?: (error: DoppelError) => void;
  /** Send the models' telemetry samples too (default true). */
  readonly telemetry?: boolean;
}

/** Live counters of a fleet. */
export interface FleetStats {
  connected: number;
  reports: number;
  acked: number;
  errors: number;
  telemetry: number;
  lastError: string | undefined;
}

interface Member {
  readonly client: DeviceClient;
  readonly device: SimulatedDevice;
  timer: NodeJS.Timeout | undefined;
  last: number;
}

/** A small deterministic PRNG (mulberry32) so fleets are reproducible per device id. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function hash(text: string): number {
  let h = 2166136261;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 16777619);
  return h >>> 0;
}

export class Fleet {
  readonly stats: FleetStats = {
    connected: 0,
    reports: 0,
    acked: 0,
    errors: 0,
    telemetry: 0,
    lastError: undefined,
  };
  readonly #members: Member[] = [];
  #running = false;

  constructor(private readonly options: FleetOptions) {}

  /** The device ids of the fleet, in order. */
  get ids(): string[] {
    return this.#members.map((m) => `${m.client.ref.type}/${m.client.ref.id}`);
  }

  /** Connects every device (sync of desired state), then starts reporting. */
  async start(): Promise<void> {
    const { models, devices, transport } = this.options;
    if (models.length === 0) return;
    this.#running = true;
    for (let n = 0; n < devices; n++) {
      const model = models[n % models.length]!;
      const id = `${this.options.idPrefix ?? ""}${model.type}-${String(Math.floor(n / models.length) + 1).padStart(3, "0")}`;
      const random = seeded(hash(id));
      const device = model.create(id, random);
      const client = new DeviceClient({ transport, type: model.type, id });
      client.onDesired((push) => device.onDesired(push.desired));
      const command = device.command?.bind(device);
      if (command) client.onCommand((name, args) => command(name, args));
      this.#members.push({ client, device, timer: undefined, last: Date.now() });
    }
    await Promise.all(
      this.#members.map(async (member, i) => {
        try {
          const { desired } = await member.client.sync();
          member.device.onDesired(desired);
          this.stats.connected++;
        } catch (error) {
          this.#failed(error);
        }
        const jitter = (i / Math.max(1, this.#members.length)) * this.options.intervalMs;
        this.#schedule(member, jitter);
      }),
    );
  }

  #schedule(member: Member, delay: number): void {
    if (!this.#running) return;
    member.timer = setTimeout(() => void this.#tick(member), delay);
    member.timer.unref();
  }

  async #tick(member: Member): Promise<void> {
    const now = Date.now();
    const step = member.device.step(now - member.last, Math.random);
    member.last = now;
    const sends: Promise<void>[] = [];
    if (step.reported && Object.keys(step.reported).length > 0) {
      this.stats.reports++;
      sends.push(
        member.client.report(step.reported).then(
          () => {
            this.stats.acked++;
          },
          (error: unknown) => this.#failed(error),
        ),
      );
    }
    if (step.telemetry && this.options.telemetry !== false) {
      sends.push(
        member.client.telemetry(step.telemetry, now).then(
          () => {
            this.stats.telemetry++;
          },
          (error: unknown) => this.#failed(error),
        ),
      );
    }
    await Promise.all(sends);
    this.#schedule(member, this.options.intervalMs);
  }

  #failed(error: unknown): void {
    if (!this.#running) return;
    const failure = DoppelError.from(error);
    this.stats.errors++;
    this.stats.lastError = `${failure.code}: ${failure.message}`;
    this.options.onError?.(failure);
  }

  /** Stops reporting and unsubscribes every device. */
  async stop(): Promise<void> {
    this.#running = false;
    for (const member of this.#members) clearTimeout(member.timer);
    await Promise.all(this.#members.map((member) => member.client.close()));
  }
}
