/**
 * Doppel as the NATS **auth callout** service (nats-server 2.10+). The server sends every
 * connecting client that is not one of its `auth_users` (the nodes, this service, the system user)
 * to `$SYS.REQ.USER.AUTH` in the callout account; this service answers with a signed
 * authorization response:
 *
 * - a device presenting user `type/id` and a password that matches its active credential gets a
 *   user JWT, signed by the issuer account key, placing it in the device account with exactly its
 *   own subjects (`device-permissions.ts`) and an expiry (`jwtTtl`): the server disconnects it then
 *   and it re-authenticates, so a revocation takes hold at the latest after one TTL;
 * - anything else (no credential, a token, a JWT or nkey, an unknown or revoked device, a wrong or
 *   oversized password) gets an error response; the server refuses the connection with
 *   "Authorization Violation" and logs the reason, and the refusal is counted here by reason.
 *
 * Several nodes may run the service: they share the work as one queue group. A request that is
 * not a valid server-signed JWT is dropped (there is no one to answer), the server times out and
 * refuses the client. Nothing a client sends can make this throw out of the handler.
 *
 * Revocation now: {@link DeviceAuthService.disconnect} asks every server (system account,
 * `$SYS.REQ.SERVER.PING.CONNZ` filtered by user name) for the device's connections and kicks each
 * (`$SYS.REQ.SERVER.<id>.KICK`); the next connect is refused because the credential is revoked.
 */
import {
  type AuthorizationRequest,
  encodeAuthorizationResponse,
  encodeUser,
  fromSeed,
  type KeyPair,
} from "@nats-io/jwt";
import type { NatsTransport, NatsTransportOptions } from "../../../cluster/transport/nats.ts";
import type { Subscription, TransportMessage } from "../../../cluster/transport/transport.ts";
import { InvalidArgument } from "../../core/errors.ts";
import type { Logger } from "../../observability/logger.ts";
import type { CredentialCheck, DeviceCredentials } from "./device-credentials.ts";
import { devicePermissions } from "./device-permissions.ts";
import { decodeVerified, issuerKey } from "./ed25519.ts";

/** The subject nats-server sends authorization requests on (in the callout account). */
export const AUTH_CALLOUT_SUBJECT = "$SYS.REQ.USER.AUTH";
const QUEUE = "doppel-auth-callout";
/** Largest authorization request looked at (a request carries the client's whole CONNECT). */
const MAX_REQUEST_BYTES = 64 * 1024;

/** Why a connection was refused (metric label). */
export type RefusalReason =
  | Extract<CredentialCheck, { ok: false }>["reason"]
  | "no-credential"
  | "unsupported-credential";

/** Counters of the service (exposed as metrics). */
export interface DeviceAuthStats {
  /** Devices let in. */
  allowed: number;
  /** Connections refused, by reason. */
  refused: Record<RefusalReason, number>;
  /** Requests dropped because they were not a valid server request. */
  invalid: number;
  /** Connections kicked after a revocation. */
  kicked: number;
}

/** How the node runs the callout service (compiled from `nats.deviceAuth`). */
export interface DeviceAuthSettings {
  /** Seed (`SA...`) of the account key that signs user JWTs; its public key is the callout's `issuer`. */
  readonly issuerSeed: string;
  /** The account devices are placed in (where Doppel's stream and node users are). */
  readonly account: string;
  /** How long a device's user JWT is valid (ms); it reconnects and is checked again after. */
  readonly jwtTtlMs: number;
  /** The service's own connection: a user of the callout account listed in `auth_users`. */
  readonly connection: Omit<NatsTransportOptions, "name">;
  /** A system-account connection, to disconnect revoked devices now (absent: at their JWT's expiry). */
  readonly system?: Omit<NatsTransportOptions, "name">;
}

function emptyStats(): DeviceAuthStats {
  return {
    allowed: 0,
    refused: {
      malformed: 0,
      unknown: 0,
      revoked: 0,
      "revoked-in-cloud": 0,
      "wrong-secret": 0,
      "no-credential": 0,
      "unsupported-credential": 0,
    },
    invalid: 0,
    kicked: 0,
  };
}

/** Validates the issuer seed: an account nkey seed. `InvalidArgument` otherwise (never the seed itself). */
export function issuerPublicKey(seed: string): string {
  try {
    const kp = fromSeed(new TextEncoder().encode(seed));
    const key = kp.getPublicKey();
    if (!key.startsWith("A")) throw new Error("not an account key");
    return key;
  } catch {
    throw new InvalidArgument("nats.deviceAuth.issuerSeed must be an account nkey seed (SA...)");
  }
}

/** The running callout service. */
export class DeviceAuthService {
  readonly stats: DeviceAuthStats = emptyStats();
  readonly #settings: DeviceAuthSettings;
  readonly #credentials: DeviceCredentials;
  readonly #logger: Logger;
  readonly #now: () => number;
  readonly #issuer: KeyPair;
  readonly #transport: NatsTransport;
  readonly #system: NatsTransport | undefined;
  #subscription: Subscription | undefined;
  #pending = new Set<Promise<void>>();

  private constructor(
    settings: DeviceAuthSettings,
    credentials: DeviceCredentials,
    logger: Logger,
    now: () => number,
    transport: NatsTransport,
    system: NatsTransport | undefined,
  ) {
    this.#settings = settings;
    this.#credentials = credentials;
    this.#logger = logger;
    this.#now = now;
    issuerPublicKey(settings.issuerSeed);
    this.#issuer = issuerKey(settings.issuerSeed);
    this.#transport = transport;
    this.#system = system;
  }

  /** Connects (service user, and system user if configured) and starts answering. */
  static async start(options: {
    readonly settings: DeviceAuthSettings;
    readonly credentials: DeviceCredentials;
    readonly logger: Logger;
    readonly nodeId: string;
    readonly now?: () => number;
  }): Promise<DeviceAuthService> {
    const { settings } = options;
    issuerPublicKey(settings.issuerSeed);
    const { NatsTransport } = await import("../../../cluster/transport/nats.ts");
    const transport = await NatsTransport.connect({
      ...settings.connection,
      name: `doppel-auth-${options.nodeId}`,
    });
    let system: NatsTransport | undefined;
    try {
      system = settings.system
        ? await NatsTransport.connect({ ...settings.system, name: `doppel-auth-sys-${options.nodeId}` })
        : undefined;
    } catch (error) {
      await transport.close();
      throw error;
    }
    const service = new DeviceAuthService(
      settings,
      options.credentials,
      options.logger,
      options.now ?? Date.now,
      transport,
      system,
    );
    service.#subscription = transport.subscribe(AUTH_CALLOUT_SUBJECT, (message) => service.#track(message), {
      queue: QUEUE,
    });
    await transport.connection.flush();
    return service;
  }

  #track(message: TransportMessage): void {
    const job = this.#answer(message).catch((error: unknown) => {
      this.#logger.warn({ err: error }, "auth callout: could not answer a request");
    });
    this.#pending.add(job);
    void job.finally(() => this.#pending.delete(job));
  }

  async #answer(message: TransportMessage): Promise<void> {
    if (!message.reply) return;
    let request: AuthorizationRequest;
    try {
      if (message.data.byteLength > MAX_REQUEST_BYTES) throw new Error("request too large");
      const claims = decodeVerified<AuthorizationRequest>(new TextDecoder().decode(message.data));
      request = claims.nats as AuthorizationRequest;
      if (typeof request?.user_nkey !== "string" || typeof request.server_id?.id !== "string") {
        throw new Error("not an authorization request");
      }
    } catch (error) {
      this.stats.invalid++;
      this.#logger.warn({ err: error }, "auth callout: dropped a request that is not a server's");
      return;
    }
    const decision = this.#decide(request);
    let body: { jwt: string } | { error: string };
    if (decision.ok) {
      this.stats.allowed++;
      const name = `${decision.ref.type}/${decision.ref.id}`;
      const jwt = await encodeUser(name, request.user_nkey, this.#issuer, devicePermissions(decision.ref), {
        aud: this.#settings.account,
        exp: Math.floor((this.#now() + this.#settings.jwtTtlMs) / 1000),
      });
      body = { jwt };
    } else {
      this.stats.refused[decision.reason]++;
      this.#logger.info(
        {
          reason: decision.reason,
          user: printable(request.connect_opts?.user),
          host: request.client_info?.host,
        },
        "auth callout: refused a device connection",
      );
      body = { error: `doppel: device credential refused (${decision.reason})` };
    }
    const response = await encodeAuthorizationResponse(
      request.user_nkey,
      request.server_id.id,
      this.#issuer,
      body,
      {},
    );
    this.#transport.respond(message, new TextEncoder().encode(response));
  }

  #decide(request: AuthorizationRequest): CredentialCheck | { ok: false; reason: RefusalReason } {
    const opts = request.connect_opts ?? {};
    // The MQTT listener hands the password over as a token too: only a token of its own is refused.
    const token = opts.auth_token !== undefined && opts.auth_token !== opts.pass;
    if (opts.jwt || opts.nkey || token) return { ok: false, reason: "unsupported-credential" };
    if (opts.user === undefined && opts.pass === undefined) return { ok: false, reason: "no-credential" };
    try {
      return this.#credentials.check(opts.user, opts.pass);
    } catch (error) {
      // A corrupt credentials file refuses everyone rather than letting anyone in.
      this.#logger.error({ err: error }, "auth callout: cannot read the device credentials");
      return { ok: false, reason: "unknown" };
    }
  }

  /**
   * Disconnects every connection of `device` (`type/id`) on every server now. Returns how many
   * were kicked; 0 without a system connection (the JWT's expiry then ends them).
   */
  async disconnect(device: string): Promise<number> {
    const system = this.#system;
    if (!system) return 0;
    const nc = system.connection;
    const encoder = new TextEncoder();
    const replies = await nc.requestMany(
      "$SYS.REQ.SERVER.PING.CONNZ",
      encoder.encode(JSON.stringify({ user: device, auth: true, limit: 1024 })),
      { strategy: "stall", maxWait: 5_000, stall: 500 },
    );
    const targets: { server: string; cid: number }[] = [];
    for await (const reply of replies) {
      const body = safeJson(reply.data) as {
        server?: { id?: string };
        data?: { connections?: { cid?: number; authorized_user?: string }[] };
      };
      const server = body?.server?.id;
      for (const connection of body?.data?.connections ?? []) {
        if (server && typeof connection.cid === "number" && connection.authorized_user === device) {
          targets.push({ server, cid: connection.cid });
        }
      }
    }
    let kicked = 0;
    for (const { server, cid } of targets) {
      try {
        await nc.request(`$SYS.REQ.SERVER.${server}.KICK`, encoder.encode(JSON.stringify({ cid })), {
          timeout: 5_000,
        });
        kicked++;
      } catch (error) {
        this.#logger.warn(
          { err: error, device, server, cid },
          "auth callout: could not kick a revoked device",
        );
      }
    }
    this.stats.kicked += kicked;
    if (kicked > 0) this.#logger.info({ device, kicked }, "auth callout: disconnected a revoked device");
    return kicked;
  }

  async stop(): Promise<void> {
    this.#subscription?.unsubscribe();
    await Promise.allSettled([...this.#pending]);
    await this.#transport.close();
    await this.#system?.close();
  }
}

function safeJson(data: Uint8Array): unknown {
  try {
    return JSON.parse(new TextDecoder().decode(data));
  } catch {
    return undefined;
  }
}

/** A user name fit for a log line: at most 80 characters. */
function printable(value: unknown): string | undefined {
  return typeof value === "string" ? value.slice(0, 80) : undefined;
}
