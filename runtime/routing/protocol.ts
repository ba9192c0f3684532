/**
 * Node-to-node protocol. Each node answers requests on `doppel.node.<nodeId>.rpc` (core NATS
 * request/reply, trace context in headers) and publishes every persisted change of the twins it
 * runs on `doppel.changes.<type>.<id>`, which `WatchTwin` on any node subscribes to.
 *
 * Requests carry the time the caller still waits (`timeoutMs`), not an absolute deadline, so
 * clocks of different nodes never need to agree. Replies are `{ ok: value }` or
 * `{ error: { code, message, details } }`.
 *
 * While a call waits for its answer, the caller checks now and then that the node it asked is
 * still there (`ping`, answered with `{ ok: "pong" }` before anything else): NATS tells at once
 * that nobody listens on a subject whose node died (its connection closed), so a call to a
 * killed node ends in about a second instead of at its deadline (see `Router`).
 *
 * A node that receives a call for a shard it does not own (the ring moved, or its lease is not
 * held yet / any more) answers `UNAVAILABLE` with `details.retry = "not-owner"` *before* doing
 * anything: the caller may retry safely, and the router does so transparently.
 */
import { Unavailable, type WireError } from "../core/errors.ts";
import type { TwinRef } from "../core/ids.ts";
import { isJsonObject, type JsonObject } from "../core/json.ts";

/** The subject node `nodeId` answers on. */
export function nodeSubject(nodeId: string): string {
  return `doppel.node.${nodeId}.rpc`;
}

/** A liveness ping to a node's subject (answered `pong`; "no responders" once the node is gone). */
export const PING_REQUEST: Uint8Array = new TextEncoder().encode(JSON.stringify({ op: "ping" }));

/** The subject a twin's persisted changes are published on. */
export function changeSubject(ref: TwinRef): string {
  return `doppel.changes.${ref.type}.${ref.id}`;
}

/** A twin call from one node to another. */
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
      readonly principal?: string;
      readonly maxTwins?: number;
      readonly timeoutMs: number;
    }
  | {
      readonly op: "desired";
      readonly ref: TwinRef;
      readonly patch: JsonObject;
      readonly expectedVersion?: number;
      readonly causation?: string;
      readonly principal?: string;
      readonly maxTwins?: number;
      readonly timeoutMs: number;
    }
  | {
      readonly op: "report";
      readonly ref: TwinRef;
      readonly patch: JsonObject;
      readonly messageId?: string;
      readonly seq?: number;
      readonly at?: number;
      readonly principal?: string;
      readonly maxTwins?: number;
      readonly timeoutMs: number;
    };

/** A liveness check of a node (no twin involved). */
export interface PingRequest {
  readonly op: "ping";
}

export type RpcReply = { readonly ok: unknown } | { readonly error: WireError };

const decoder = new TextDecoder();

/** A reply's body as {@link RpcReply}; `UNAVAILABLE` when it is neither `{ ok }` nor `{ error }`. */
export function decodeReply(data: Uint8Array): RpcReply {
  let value: unknown;
  try {
    value = JSON.parse(decoder.decode(data));
  } catch {
    value = undefined;
  }
  if (!isJsonObject(value) || !("ok" in value || isJsonObject(value["error"]))) {
    throw new Unavailable("malformed reply from another node");
  }
  return value as RpcReply;
}

/** The refusal of a node that does not own `shard` (safe to retry elsewhere). */
export function notOwner(shard: number, nodeId: string): Unavailable {
  return new Unavailable(`node ${nodeId} does not own shard ${shard} (it is moving); retry`, {
    retry: "not-owner",
    shard,
  });
}

/**
 * The failure of a call whose node went away (its connection closed) before answering: the call
 * may or may not have been applied.
 */
export function outcomeUnknown(nodeId: string, what: string): Unavailable {
  return new Unavailable(
    `node ${nodeId} went away while running ${what} (its connection closed before it answered); the outcome is unknown: it may or may not have been applied`,
    { retry: "outcome-unknown", node: nodeId },
  );
}
