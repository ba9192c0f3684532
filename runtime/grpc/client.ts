/**
 * `DoppelClient`: the typed TypeScript client of a Doppel node's gRPC gateway, used by services
 * and the `doppel` CLI. It speaks plain Doppel types (`TwinView`, JSON, epoch ms), never protobuf
 * shapes, and every failure is a {@link DoppelError} subclass rebuilt from the status and the
 * `doppel-error-*` trailers (see `status.ts`), so `catch (e) { if (e instanceof VersionConflict) ... }`
 * works across the wire.
 *
 * ```ts
 * const client = new DoppelClient("localhost:50051");
 * const t1 = { type: "thermostat", id: "t1" };
 * await client.invoke(t1, "setTarget", { celsius: 22 });
 * for await (const { twin } of client.watch(t1)) console.log(twin.reported);
 * client.close();
 * ```
 */
import * as grpc from "@grpc/grpc-js";
import { service as healthService } from "grpc-health-check";
import type { ClusterView } from "../core/cluster-view.ts";
import { DoppelError, Internal, InvalidArgument, Unavailable } from "../core/errors.ts";
import type { TwinRef } from "../core/ids.ts";
import type { Json, JsonObject } from "../core/json.ts";
import { present } from "../core/present.ts";
import type { TwinView } from "../core/records.ts";
import type { InvokeResult, ReportResult } from "../core/twin-api.ts";
import type { TypeInfo } from "./calls.ts";
import type { ClusterInfo__Output } from "./generated/doppel/v1/ClusterInfo.ts";
import type { Twin__Output } from "./generated/doppel/v1/Twin.ts";
import type { TwinServiceClient } from "./generated/doppel/v1/TwinService.ts";
import type { Value__Output } from "./generated/google/protobuf/Value.ts";
import {
  changeToWatched,
  messageToEvent,
  messageToSample,
  type RemoteEvent,
  type TelemetryPoint,
  twinToView,
  type WatchedChange,
} from "./messages.ts";
import { loadContract } from "./proto.ts";
import { fromServiceError } from "./status.ts";
import { jsonToStruct, msToDuration, msToTimestamp, timestampToMs, valueToJson } from "./struct.ts";

export type { TypeInfo } from "./calls.ts";
export type { RemoteEvent, TelemetryPoint, WatchedChange } from "./messages.ts";

/** How a {@link DoppelClient} connects and how long it waits. */
export interface DoppelClientOptions {
  /** Deadline of each unary call, ms (default 10 000). Streams have none. */
  readonly timeoutMs?: number;
  /** Channel credentials (default: plaintext, or TLS when `ca` is given). Overrides `ca`, `cert`, `key`. */
  readonly credentials?: grpc.ChannelCredentials;
  /** API key sent as `authorization: Bearer <token>` on every call. */
  readonly token?: string;
  /** Connect over TLS, trusting this CA (PEM). */
  readonly ca?: Buffer;
  /** Client certificate and key (PEM) for mTLS; needs `ca`. */
  readonly cert?: Buffer;
  readonly key?: Buffer;
  /** Expected server name in the certificate when it differs from the address's host. */
  readonly serverName?: string;
  /** Largest message sent or received, bytes (default 4 MiB). */
  readonly maxMessageBytes?: number;
}

/** Options of {@link DoppelClient.watch}. */
export interface WatchOptions {
  /** Do not send the current state first. */
  readonly skipCurrent?: boolean;
  /** Called once the server has subscribed: every change persisted after this is delivered. */
  readonly onReady?: () => void;
}

/** A history slice: inclusive version and/or time (epoch ms) bounds, absent = open. */
export interface HistoryQuery {
  readonly fromVersion?: number;
  readonly toVersion?: number;
  readonly since?: number;
  readonly until?: number;
  /** Most events to stream; absent or 0 = all in range. */
  readonly limit?: number;
}

/** A telemetry slice (epoch ms; `until` defaults to now) and an optional downsampling interval. */
export interface TelemetryRequest {
  readonly since?: number;
  readonly until?: number;
  /** Most samples; absent or 0 = the server's default (10 000). */
  readonly limit?: number;
  /** Aggregate into buckets of this many ms (`<metric>.min/.max/.avg/.count`). */
  readonly intervalMs?: number;
}

/** A health status as `grpc.health.v1` reports it. */
export type HealthStatus = "UNKNOWN" | "SERVING" | "NOT_SERVING" | "SERVICE_UNKNOWN";

/** Channel credentials from the TLS options: plaintext without a CA. */
function clientCredentials(options: DoppelClientOptions): grpc.ChannelCredentials {
  if (options.ca === undefined) {
    if (options.cert !== undefined || options.key !== undefined) {
      throw new InvalidArgument("a client certificate (cert, key) needs a CA (ca) to connect over TLS");
    }
    return grpc.credentials.createInsecure();
  }
  if ((options.cert === undefined) !== (options.key === undefined)) {
    throw new InvalidArgument("give both cert and key for a client certificate, or neither");
  }
  return grpc.credentials.createSsl(options.ca, options.key ?? null, options.cert ?? null);
}

/** Decodes a response message, turning a malformed one into `Internal` (the server broke the contract). */
function decode<M, T>(message: M, what: string, convert: (message: M) => T): T {
  try {
    return convert(message);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new Internal(`malformed ${what} from the server: ${reason}`);
  }
}

/**
 * Iterates a server stream as decoded values. Failures surface as `DoppelError`s from the
 * iterator; leaving the loop early (break, throw, return) cancels the call.
 */
async function* iterate<M, T>(
  call: grpc.ClientReadableStream<M>,
  what: string,
  convert: (message: M) => T,
): AsyncGenerator<T, void, undefined> {
  // Errors reach the consumer through the iterator; this listener only keeps a late 'error'
  // (the CANCELLED status after our own cancel) from being an unhandled event.
  call.on("error", () => {});
  try {
    for await (const message of call) yield decode(message as M, what, convert);
  } catch (error) {
    throw error instanceof DoppelError ? error : fromServiceError(error);
  } finally {
    call.cancel();
  }
}

/** A client of one Doppel node (or a load balancer in front of several). Cheap to keep; close when done. */
export class DoppelClient {
  readonly #client: TwinServiceClient;
  readonly #raw: grpc.Client;
  readonly #timeoutMs: number;
  readonly #address: string;
  readonly #metadata: () => grpc.Metadata;

  /** Creates a client; connects lazily on the first call. Fails (`InvalidArgument`) only for bad options. */
  constructor(address = "localhost:50051", options: DoppelClientOptions = {}) {
    const timeoutMs = options.timeoutMs ?? 10_000;
    if (!(timeoutMs > 0)) throw new InvalidArgument(`timeoutMs must be positive, got ${timeoutMs}`);
    this.#timeoutMs = timeoutMs;
    this.#address = address;
    const maxMessageBytes = options.maxMessageBytes ?? 4 * 1024 * 1024;
    const token = options.token;
    if (token !== undefined && (token === "" || /[^\x21-\x7e]/.test(token))) {
      throw new InvalidArgument("token must be non-empty printable ASCII without spaces");
    }
    this.#metadata = () => {
      const metadata = new grpc.Metadata();
      if (token !== undefined) metadata.set("authorization", `Bearer ${token}`);
      return metadata;
    };
    const channelCredentials = options.credentials ?? clientCredentials(options);
    const { Client } = loadContract();
    this.#client = new Client(address, channelCredentials, {
      "grpc.max_receive_message_length": maxMessageBytes,
      "grpc.max_send_message_length": maxMessageBytes,
      ...(options.serverName ? { "grpc.ssl_target_name_override": options.serverName } : {}),
    });
    this.#raw = new grpc.Client(address, channelCredentials, {
      channelOverride: this.#client.getChannel(),
    });
  }

  #options(): grpc.CallOptions {
    return { deadline: Date.now() + this.#timeoutMs };
  }

  /** Runs one unary call within the client's deadline; rejects with a `DoppelError`. */
  #unary<Res>(
    start: (options: grpc.CallOptions, callback: grpc.requestCallback<Res>) => grpc.ClientUnaryCall,
  ): Promise<Res> {
    return new Promise((resolve, reject) => {
      start(this.#options(), (error, response) => {
        if (error) reject(this.#explain(fromServiceError(error)));
        else if (response === undefined) reject(new Internal("empty response from the server"));
        else resolve(response);
      });
    });
  }

  /** The latest persisted state of a twin. `NotFound` if it has no events (or its type is unknown). */
  async getTwin(ref: TwinRef): Promise<TwinView> {
    const twin = await this.#unary<Twin__Output>((o, cb) =>
      this.#client.getTwin({ type: ref.type, id: ref.id }, this.#metadata(), o, cb),
    );
    return decode(twin, "twin", twinToView);
  }

  /** A page of the twins of one type matching `where` (see the proto for the filter syntax). */
  async queryTwins(
    type: string,
    options: { where?: string; limit?: number; pageToken?: string } = {},
  ): Promise<{ twins: TwinView[]; nextPageToken?: string }> {
    const response = await this.#unary<{ twins: Twin__Output[]; nextPageToken: string }>((o, cb) =>
      this.#client.queryTwins(
        { type, where: options.where ?? "", limit: options.limit ?? 0, pageToken: options.pageToken ?? "" },
        this.#metadata(),
        o,
        cb,
      ),
    );
    const twins = response.twins.map((twin) => decode(twin, "twin", twinToView));
    return response.nextPageToken === "" ? { twins } : { twins, nextPageToken: response.nextPageToken };
  }

  /**
   * Runs a command and returns its result and the twin's version after it. `VersionConflict`
   * when `expectedVersion` is stale, `FailedPrecondition` when the twin refuses, `InvalidArgument`
   * for bad arguments, `NotFound` for an unknown type or command.
   */
  async invoke(
    ref: TwinRef,
    command: string,
    args: JsonObject = {},
    options: { expectedVersion?: number } = {},
  ): Promise<InvokeResult> {
    const response = await this.#unary<{ result: Value__Output | null; version: number }>((o, cb) =>
      this.#client.invokeCommand(
        {
          type: ref.type,
          id: ref.id,
          command,
          args: jsonToStruct(args),
          ...present({ expectedVersion: options.expectedVersion }),
        },
        this.#metadata(),
        o,
        cb,
      ),
    );
    const result: Json = decode(response.result, "command result", (v) => valueToJson(v, "result"));
    return { result, version: response.version };
  }

  /** Merges a desired-state patch (RFC 7396); returns the twin after it. */
  async updateDesired(
    ref: TwinRef,
    patch: JsonObject,
    options: { expectedVersion?: number } = {},
  ): Promise<TwinView> {
    const twin = await this.#unary<Twin__Output>((o, cb) =>
      this.#client.updateDesired(
        {
          type: ref.type,
          id: ref.id,
          patch: jsonToStruct(patch),
          ...present({ expectedVersion: options.expectedVersion }),
        },
        this.#metadata(),
        o,
        cb,
      ),
    );
    return decode(twin, "twin", twinToView);
  }

  /**
   * Reports device state on a device's behalf; a repeated `messageId`, or a `seq` at or below the
   * twin's high-water mark, is acknowledged as a duplicate (`stale` for the latter).
   */
  async reportState(
    ref: TwinRef,
    patch: JsonObject,
    options: { messageId?: string; seq?: number; at?: number } = {},
  ): Promise<ReportResult> {
    const response = await this.#unary<ReportResult>((o, cb) =>
      this.#client.reportState(
        {
          type: ref.type,
          id: ref.id,
          patch: jsonToStruct(patch),
          messageId: options.messageId ?? "",
          seq: options.seq ?? 0,
          at: options.at ?? 0,
        },
        this.#metadata(),
        o,
        cb,
      ),
    );
    return {
      version: response.version,
      duplicate: response.duplicate,
      ...(response.stale ? { stale: true } : {}),
    };
  }

  /**
   * Streams a twin's changes: its current state first (unless `skipCurrent`; skipped too when the
   * twin has no events yet), then one item per persisted change. Runs until the consumer leaves
   * the loop (which cancels the call) or the server ends it: `Unavailable` when the node stops,
   * `ResourceExhausted` when this consumer fell too far behind (watch again to resume).
   */
  watch(ref: TwinRef, options: WatchOptions = {}): AsyncIterable<WatchedChange> {
    const client = this.#client;
    const metadata = this.#metadata();
    return {
      [Symbol.asyncIterator]() {
        const call = client.watchTwin(
          {
            type: ref.type,
            id: ref.id,
            skipCurrent: options.skipCurrent ?? false,
          },
          metadata,
        );
        const onReady = options.onReady;
        if (onReady) call.once("metadata", () => onReady());
        return iterate(call, "twin change", changeToWatched);
      },
    };
  }

  /** Streams a twin's events in a version and/or time range, oldest first. */
  history(ref: TwinRef, range: HistoryQuery = {}): AsyncIterable<RemoteEvent> {
    const client = this.#client;
    const metadata = this.#metadata();
    return {
      [Symbol.asyncIterator]() {
        const call = client.getHistory(
          {
            type: ref.type,
            id: ref.id,
            fromVersion: range.fromVersion ?? 0,
            toVersion: range.toVersion ?? 0,
            since: range.since === undefined ? null : msToTimestamp(range.since),
            until: range.until === undefined ? null : msToTimestamp(range.until),
            limit: range.limit ?? 0,
          },
          metadata,
        );
        return iterate(call, "history event", messageToEvent);
      },
    };
  }

  /** Streams a twin's telemetry samples in a time range, raw or downsampled (`intervalMs`). */
  telemetry(ref: TwinRef, query: TelemetryRequest = {}): AsyncIterable<TelemetryPoint> {
    const client = this.#client;
    const metadata = this.#metadata();
    return {
      [Symbol.asyncIterator]() {
        const call = client.getTelemetry(
          {
            type: ref.type,
            id: ref.id,
            since: query.since === undefined ? null : msToTimestamp(query.since),
            until: query.until === undefined ? null : msToTimestamp(query.until),
            limit: query.limit ?? 0,
            interval: query.intervalMs === undefined ? null : msToDuration(query.intervalMs),
          },
          metadata,
        );
        return iterate(call, "telemetry sample", messageToSample);
      },
    };
  }

  /** Rewrites grpc-js's connection failures into a sentence that names the address. */
  #explain(error: DoppelError): DoppelError {
    if (
      error.code !== "UNAVAILABLE" ||
      !/No connection established|ECONNREFUSED|ENOTFOUND/.test(error.message)
    )
      return error;
    const reason = /ECONNREFUSED/.test(error.message)
      ? "connection refused"
      : /ENOTFOUND/.test(error.message)
        ? "unknown host"
        : "no connection";
    return new Unavailable(
      `cannot reach a Doppel node at ${this.#address} (${reason}); is it running?`,
      undefined,
      {
        cause: error,
      },
    );
  }

  /** The twin types the node runs, with their command names. */
  async listTypes(): Promise<TypeInfo[]> {
    const response = await this.#unary<{ types: { name: string; commands: string[] }[] }>((o, cb) =>
      this.#client.listTypes({}, this.#metadata(), o, cb),
    );
    return response.types.map((type) => ({ name: type.name, commands: [...type.commands] }));
  }

  /** The cluster as the node sees it: members, shard assignment, lease holders and epochs. */
  async cluster(): Promise<ClusterView> {
    const info = await this.#unary<ClusterInfo__Output>((o, cb) =>
      this.#client.getCluster({}, this.#metadata(), o, cb),
    );
    return {
      name: info.name,
      shardCount: info.shardCount,
      self: info.self,
      nodes: info.nodes.map((node) => ({
        id: node.id,
        grpcAddress: node.grpcAddress,
        startedAt: timestampToMs(node.startedAt, "startedAt") ?? 0,
        lastHeartbeat: timestampToMs(node.lastHeartbeat, "lastHeartbeat") ?? 0,
        residentTwins: node.residentTwins,
        shardsOwned: node.shardsOwned,
        shardsAssigned: node.shardsAssigned,
      })),
      shards: info.shards.map((shard) => ({ ...shard })),
    };
  }

  /**
   * The node's health (`grpc.health.v1.Health/Check`) for `service` ("" = the whole server,
   * or `doppel.v1.TwinService`). `NotFound` for a service the server does not know.
   */
  async health(service = ""): Promise<HealthStatus> {
    const check = healthService["Check"];
    if (check === undefined) throw new Internal("grpc-health-check has no Check method");
    const response = await this.#unary<object>((o, cb) =>
      this.#raw.makeUnaryRequest(
        check.path,
        check.requestSerialize,
        check.responseDeserialize,
        { service },
        this.#metadata(),
        o,
        cb,
      ),
    );
    const status = (response as { status?: unknown }).status;
    if (
      status === "UNKNOWN" ||
      status === "SERVING" ||
      status === "NOT_SERVING" ||
      status === "SERVICE_UNKNOWN"
    ) {
      return status;
    }
    throw new Internal(`unexpected health status from the server: ${String(status)}`);
  }

  /** Closes the connection; calls in flight fail with `Unavailable`. */
  close(): void {
    this.#client.close();
  }
}
