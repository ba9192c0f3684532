/**
 * Node-to-node protocol. Each node answers requests on `doppel.node.<nodeId>.rpc` (core NATS
 * request/reply, trace context in headers) and publishes every persisted change of the twins it
 * runs on `doppel.changes.<type>.<id>`, which `WatchTwin` on any node subscribes to.
 *
 * Requests carry the time the caller still waits (`timeoutMs`), not an absolute deadline, so
 * clocks of different nodes never need to agree. Replies are `{ ok: value }` or
 * `{ error: { code, message, details } }`.
 *
 * A node that receives a call for a shard it does not own (the ring moved, or its lease is not
 * held yet / any more) answers `UNAVAILABLE` with `details.retry = "not-owner"` *before* doing
 * anything: the caller may retry safely, and the router does so transparently.
 */
import { Unavailable, type WireError } from "../api/errors.ts";
import type { TwinRef } from "../api/ids.ts";
import type { JsonObject } from "../api/json.ts";

/** The subject node `nodeId` answers on. */
export function nodeSubject(nodeId: string): string {
  return `doppel.node.${nodeId}.rpc`;
}

/** The subject a twin's persisted changes are published on. */
export function changeSubject(ref: TwinRef): string {
  return `doppel.changes.${ref.type}.${ref.id}`;
}

export type RpcRequest =
  | { readonly op: "get"; readonly ref: TwinRef }
  | {
      readonly op: "invoke";
      readonly ref: TwinRef;
      readonly command: string;
      readonly args: JsonObject;
      readonly expectedVersion?: number;
      readonly chain?: readonly string[];
      readonly causation?: string;
      readonly timeoutMs: number;
    }
  | {
      readonly op: "desired";
      readonly ref: TwinRef;
      readonly patch: JsonObject;
      readonly expectedVersion?: number;
      readonly causation?: string;
      readonly timeoutMs: number;
    }
  | {
      readonly op: "report";
      readonly ref: TwinRef;
      readonly patch: JsonObject;
      readonly messageId?: string;
      readonly timeoutMs: number;
    };

export type RpcReply = { readonly ok: unknown } | { readonly error: WireError };

/** The refusal of a node that does not own `shard` (safe to retry elsewhere). */
export function notOwner(shard: number, nodeId: string): Unavailable {
  return new Unavailable(`node ${nodeId} does not own shard ${shard} (it is moving); retry`, {
    retry: "not-owner",
    shard,
  });
}

/** True for a failure that happened before any work: the call may be retried on the (new) owner. */
export function isSafeToRetry(error: {
  code?: string;
  details?: Readonly<Record<string, unknown>> | undefined;
}): boolean {
  return error.code === "UNAVAILABLE" && error.details?.["retry"] === "not-owner";
}
