/**
 * HTTP device ingress, for devices that can only speak HTTP(S): `POST` reported state and
 * telemetry, `GET` desired state with its version, under `/v1/devices/{type}/{id}/...`. The
 * device authenticates with its own credential from `doppel devices provision` as HTTP Basic
 * (`type/id` and the password, as on NATS and MQTT), never with an API key; a valid credential
 * of another device is 403.
 *
 * A report or telemetry message is answered 202 only once it is durable: it goes the shared way
 * of request/response protocols ({@link DeviceReports}, the node's `DurableReports`: the same
 * checks as NATS ingress, then into the JetStream ingress stream), so it is applied by the same
 * ingress, in the same order, with the same deduplication. Refusals are problem details with the
 * stable Doppel codes: 400 (payload, stamp, schema), 401 / 403 (credential), 404 (type), 429
 * (the device's rate or the node's admission bound, with `Retry-After`), 503 (the stream did not
 * store it in time; nothing was acknowledged, send it again).
 */
import { randomUUID } from "node:crypto";
import { z } from "zod";
import { NotFound, Unauthenticated } from "../core/errors.ts";
import { refKey, type TwinRef, twinRef } from "../core/ids.ts";
import type { JsonObject } from "../core/json.ts";
import { twinId, typeName } from "./resources.ts";
import { type HttpCall, type Route, route } from "./route.ts";
import type { WebModule } from "./server.ts";

/** The shadow a device reads: desired state, what it has not met yet, and the twin's version. */
export interface DeviceDesired {
  readonly version: number;
  readonly desired: JsonObject;
  readonly delta: JsonObject;
}

/** The durable report path the routes hand their devices to (`runtime/devices/ingress/durable-reports.ts`). */
export interface DeviceReports {
  /** Throws `Unauthenticated` / `PermissionDenied` unless `user`'s `secret` may act for `ref`. */
  authenticate(ref: TwinRef, secret: string | undefined, user?: string): void;
  /** Validates and stores a message durably; resolves once it is. */
  store(
    ref: TwinRef,
    channel: "reported" | "telemetry",
    body: JsonObject,
    meta: { seq?: string | undefined; at?: string | undefined; messageId: string },
  ): Promise<void>;
  /** The device's desired state and version. */
  state(ref: TwinRef): Promise<DeviceDesired>;
}

/** Counters of the HTTP device routes (exposed as `doppel_http_devices_total`). */
export interface HttpDeviceStats {
  /** Requests that reached a device route. */
  requests: number;
  /** Reports and telemetry messages acknowledged as durable (202). */
  stored: number;
  /** Desired-state reads answered (200 or 304). */
  reads: number;
  /** Refused with a 4xx problem. */
  refused: number;
  /** Of those, refused for a missing, wrong, revoked or another device's credential (401, 403). */
  unauthorized: number;
  /** Refused with a 5xx problem (the stream did not store it, the node is overloaded). */
  unavailable: number;
}

const deviceParams = z.object({ type: typeName, id: twinId });

/** `Doppel-Seq`, `Doppel-At` and `Idempotency-Key`: the same stamp and deduplication as NATS headers. */
const reportHeaders = z.object({
  "doppel-seq": z
    .string()
    .regex(/^[0-9]{1,16}$/, "Doppel-Seq is a decimal integer")
    .optional()
    .describe("the device's sequence number: the twin applies each at most once, never after a later one"),
  "doppel-at": z
    .string()
    .regex(/^[0-9]{1,16}$/, "Doppel-At is epoch milliseconds")
    .optional()
    .describe("the device's time of the report, epoch ms: a late field never overwrites a newer one"),
  "idempotency-key": z
    .string()
    .regex(/^[\x21-\x7e]{1,128}$/, "Idempotency-Key is 1 to 128 visible ASCII characters")
    .optional()
    .describe(
      "the message's id: a re-sent message with the same key is stored once (within the stream's window)",
    ),
});
const telemetryHeaders = reportHeaders.pick({ "idempotency-key": true });

const storedSchema = z.object({
  messageId: z.string().describe("the deduplication id the message was stored under"),
});
const desiredSchema = z
  .object({
    version: z.number().int().min(0).describe("the twin's version; also the ETag"),
    desired: z.record(z.string(), z.unknown()),
    delta: z.record(z.string(), z.unknown()).describe("desired leaves the device has not reported yet"),
  })
  .describe("What the device should do: desired state, the part not met yet, and the version");

const objectBody = (description: string) =>
  z
    .record(z.string(), z.unknown())
    .describe(description)
    .transform((value) => value as JsonObject);

/** The credential of a request: HTTP Basic with user `type/id` and the device's password. */
function basicCredential(call: HttpCall<unknown, unknown, unknown, unknown>): {
  user: string;
  secret: string;
} | null {
  const header = call.parts.headers["authorization"];
  if (header === undefined) return null;
  const value = Array.isArray(header) ? header[0] : header;
  const match = /^Basic[ ]+([A-Za-z0-9+/=]{1,1024})$/i.exec(value ?? "");
  if (!match)
    throw new Unauthenticated("the device credential goes as 'Authorization: Basic' (type/id and password)");
  const text = Buffer.from(match[1] ?? "", "base64").toString("utf8");
  const colon = text.indexOf(":");
  if (colon < 0) throw new Unauthenticated("the Basic credential has no ':' between user and password");
  return { user: text.slice(0, colon), secret: text.slice(colon + 1) };
}

/** Counts the outcome of a device request. */
function counted<T>(stats: HttpDeviceStats, work: () => Promise<T>): Promise<T> {
  stats.requests++;
  return work().catch((error: unknown) => {
    const code = (error as { code?: unknown }).code;
    if (code === "UNAUTHENTICATED" || code === "PERMISSION_DENIED") stats.unauthorized++;
    if (
      code === "INVALID_ARGUMENT" ||
      code === "UNAUTHENTICATED" ||
      code === "PERMISSION_DENIED" ||
      code === "NOT_FOUND"
    )
      stats.refused++;
    else stats.unavailable++;
    throw error;
  });
}

/**
 * The device the request may act for, checked before its body is looked at: the path's twin
 * (400), its type (404), the credential (401 / 403).
 */
function authenticated(
  call: HttpCall<unknown, unknown, unknown, unknown>,
  reports: DeviceReports,
  hasType: (type: string) => boolean,
): TwinRef {
  const credential = basicCredential(call);
  const ref = twinRef(call.param("type"), call.param("id"));
  if (!hasType(ref.type)) throw new NotFound(`no twin type '${ref.type}' on this node`, { type: ref.type });
  reports.authenticate(ref, credential?.secret, credential?.user);
  return ref;
}

/** The device routes, served by the HTTP listener beside the REST API. */
export function deviceRoutesModule(
  reports: DeviceReports,
  hasType: (type: string) => boolean,
  stats: HttpDeviceStats,
): WebModule {
  const store =
    (channel: "reported" | "telemetry") => async (call: HttpCall<unknown, unknown, unknown, unknown>) =>
      counted(stats, async () => {
        const ref = authenticated(call, reports, hasType);
        const { headers, body } = call.parsed() as {
          headers: Partial<Record<"doppel-seq" | "doppel-at" | "idempotency-key", string>>;
          body: JsonObject;
        };
        const key = headers["idempotency-key"];
        // Scoped to the device: the stream deduplicates ids across every device's messages.
        const messageId = `http:${refKey(ref)}:${key ?? randomUUID()}`;
        await reports.store(ref, channel, body, {
          seq: headers["doppel-seq"],
          at: headers["doppel-at"],
          messageId,
        });
        stats.stored++;
        return { status: 202, body: { messageId } };
      });

  const routes: Route[] = [
    route({
      method: "POST",
      path: "/v1/devices/{type}/{id}/reported",
      operationId: "deviceReport",
      summary: "A device reports its state (a JSON merge patch); 202 once it is durable",
      tag: "devices",
      credential: "device",
      params: deviceParams,
      headers: reportHeaders,
      body: objectBody("a JSON merge patch of reported state, checked against the type's reported schema"),
      response: {
        status: 202,
        description: "stored durably; the twin applies it in order",
        schema: storedSchema,
      },
      problems: [403, 404, 413, 415],
      handle: store("reported"),
    }),
    route({
      method: "POST",
      path: "/v1/devices/{type}/{id}/telemetry",
      operationId: "deviceTelemetry",
      summary: "A device sends telemetry: { at?, metrics } or { samples: [...] }; 202 once it is durable",
      tag: "devices",
      credential: "device",
      params: deviceParams,
      headers: telemetryHeaders,
      body: objectBody("one sample `{ at?, metrics: { name: number } }` or `{ samples: [...] }` (1 to 1000)"),
      response: { status: 202, description: "stored durably", schema: storedSchema },
      problems: [403, 404, 413, 415],
      handle: store("telemetry"),
    }),
    route({
      method: "GET",
      path: "/v1/devices/{type}/{id}/desired",
      operationId: "deviceDesired",
      summary: "A device reads its desired state, delta and the twin's version (ETag; If-None-Match: 304)",
      tag: "devices",
      credential: "device",
      params: deviceParams,
      headers: z.object({
        "if-none-match": z
          .string()
          .max(64)
          .optional()
          .describe('the ETag of the last read: "<version>"; unchanged: 304 without a body'),
      }),
      response: {
        status: 200,
        description: "the device's desired state",
        schema: desiredSchema,
        headers: {
          etag: { description: 'the twin\'s version: "<version>"', schema: z.string().regex(/^"[0-9]+"$/) },
        },
      },
      problems: [403, 404],
      handle: async (call) =>
        counted(stats, async () => {
          const ref = authenticated(call, reports, hasType);
          const { headers } = call.parsed() as { headers: { "if-none-match"?: string } };
          const state = await reports.state(ref);
          stats.reads++;
          const etag = `"${state.version}"`;
          if (headers["if-none-match"] === etag) return { status: 304, body: undefined, headers: { etag } };
          return {
            body: { version: state.version, desired: state.desired, delta: state.delta },
            headers: { etag },
          };
        }),
    }),
  ];
  return { routes };
}
