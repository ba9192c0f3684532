/**
 * The server side of node-to-node calls: answers requests on `doppel.node.<nodeId>.rpc` by running
 * them on this node's twins, after checking that this node owns the twin's shard (else it refuses
 * with a safe-to-retry `not-owner`, before doing anything), and answers liveness pings. Malformed requests get
 * `INVALID_ARGUMENT`; nothing here can crash the node.
 */
import type { Subscription, Transport, TransportMessage } from "../../cluster/transport/transport.ts";
import type { Admission, Permit } from "../core/admission.ts";
import type { Clock } from "../core/clock.ts";
import { DoppelError, InvalidArgument } from "../core/errors.ts";
import { twinRef } from "../core/ids.ts";
import { isJsonObject, type JsonObject } from "../core/json.ts";
import { present } from "../core/present.ts";
import type { LocalTwins } from "../engine/local-twins.ts";
import type { Logger } from "../observability/logger.ts";
import { inSpan, SpanKind, tracedParent } from "../observability/tracing.ts";
import type { Placement } from "./placement.ts";
import { nodeSubject, notOwner, type PingRequest, type RpcRequest } from "./protocol.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * A node request's body; `INVALID_ARGUMENT` when it is not JSON, not `{ op, ref, ... }`, names an
 * unknown op, or lacks what its op needs: a positive finite `timeoutMs` for every call that runs a
 * turn (the deadline is computed from it), a `command` name and `args` object for `invoke`, a
 * `patch` object for `desired` and `report`. The other fields are checked where they are used.
 */
export function parseRequest(data: Uint8Array): RpcRequest | PingRequest {
  let value: unknown;
  try {
    value = JSON.parse(decoder.decode(data));
  } catch {
    throw new InvalidArgument("node request is not JSON");
  }
  if (isJsonObject(value) && value["op"] === "ping") return { op: "ping" };
  if (!isJsonObject(value) || typeof value["op"] !== "string" || !isJsonObject(value["ref"])) {
    throw new InvalidArgument("node request must be { op, ref, ... }");
  }
  const { op, ref } = value;
  if (op !== "get") {
    if (op !== "invoke" && op !== "desired" && op !== "report") {
      throw new InvalidArgument(`unknown node request op '${op}'`);
    }
    const timeoutMs = value["timeoutMs"];
    if (!(typeof timeoutMs === "number" && Number.isFinite(timeoutMs) && timeoutMs > 0)) {
      throw new InvalidArgument(`a node ${op} request needs timeoutMs, a positive number of milliseconds`);
    }
    if (op === "invoke" && !(typeof value["command"] === "string" && isJsonObject(value["args"]))) {
      throw new InvalidArgument("a node invoke request needs a command name and an args object");
    }
    if (op !== "invoke" && !isJsonObject(value["patch"])) {
      throw new InvalidArgument(`a node ${op} request needs a patch object`);
    }
  }
  return { ...(value as unknown as RpcRequest), ref: twinRef(ref["type"], ref["id"]) };
}

/**
 * The calling connection of a request (fairness between calling nodes): its reply inbox without
 * the per-request token (`_INBOX.<connection>.<n>` → `_INBOX.<connection>`).
 */
function callerOf(message: TransportMessage): string {
  const reply = message.reply ?? "";
  const dot = reply.lastIndexOf(".");
  return dot > 0 ? reply.slice(0, dot) : reply;
}

/** A running node-RPC (or edge-RPC) server. */
export interface NodeRpcServer {
  /** Stops taking requests and waits until every request already taken is answered. */
  stop(): Promise<void>;
}

/** Answers node requests until stopped. */
export function serveNodeRpc(options: {
  readonly transport: Transport;
  readonly placement: Placement;
  readonly local: LocalTwins;
  readonly shardOf: (type: string, id: string) => number;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Bounds the calls from other nodes in flight (class `node`, per calling connection); absent: no bound. */
  readonly admission?: Admission;
}): NodeRpcServer {
  const { transport, placement, local, shardOf, clock, logger, admission } = options;

  async function run(request: RpcRequest): Promise<unknown> {
    const shard = shardOf(request.ref.type, request.ref.id);
    if (!placement.owns(shard)) throw notOwner(shard, placement.nodeId);
    switch (request.op) {
      case "get":
        return local.get(request.ref);
      case "invoke":
        return local.invoke(request.ref, request.command, request.args as JsonObject, {
          deadline: clock.now() + request.timeoutMs,
          ...present({
            expectedVersion: request.expectedVersion,
            chain: request.chain,
            causation: request.causation,
            principal: request.principal,
            maxTwins: request.maxTwins,
          }),
        });
      case "desired":
        return local.updateDesired(request.ref, request.patch as JsonObject, {
          deadline: clock.now() + request.timeoutMs,
          ...present({
            expectedVersion: request.expectedVersion,
            causation: request.causation,
            principal: request.principal,
            maxTwins: request.maxTwins,
          }),
        });
      case "report":
        return local.report(request.ref, request.patch as JsonObject, {
          deadline: clock.now() + request.timeoutMs,
          ...present({
            messageId: request.messageId,
            seq: request.seq,
            at: request.at,
            principal: request.principal,
            maxTwins: request.maxTwins,
          }),
        });
    }
  }

  return serveRequests(transport, nodeSubject(placement.nodeId), logger, async (message) => {
    let permit: Permit | undefined;
    try {
      const request = parseRequest(message.data);
      if (request.op === "ping") return "pong";
      // Pings are liveness, never throttled; calls are admitted before anything is queued.
      permit = admission?.admit("node", callerOf(message));
      const parent = tracedParent((key) => message.headers.get(key));
      if (parent === undefined) return await run(request);
      return await inSpan(
        `rpc node.${request.op}`,
        SpanKind.SERVER,
        { "doppel.twin": `${request.ref.type}/${request.ref.id}` },
        () => run(request),
        parent,
      );
    } finally {
      permit?.release();
    }
  });
}

/**
 * Answers every request on `subject` with `{ ok: value }` of `answer`, or `{ error }` of what it
 * threw (INTERNAL failures are logged); `stop()` unsubscribes and waits for the answers in flight.
 */
export function serveRequests(
  transport: Transport,
  subject: string,
  logger: Logger,
  answer: (message: TransportMessage) => Promise<unknown>,
  options: { readonly queue?: string } = {},
): NodeRpcServer {
  const inflight = new Set<Promise<void>>();
  const handle = (message: TransportMessage) => {
    const work = (async () => {
      let reply: object;
      try {
        reply = { ok: (await answer(message)) ?? null };
      } catch (error) {
        const failure = DoppelError.from(error);
        if (failure.code === "INTERNAL") logger.warn({ err: error, subject }, "request failed");
        reply = { error: failure.toWire() };
      }
      try {
        transport.respond(message, encoder.encode(JSON.stringify(reply)));
      } catch (error) {
        logger.debug({ err: error, subject }, "reply not sent");
      }
    })();
    inflight.add(work);
    void work.finally(() => inflight.delete(work));
  };
  const subscription: Subscription = transport.subscribe(subject, handle, options);
  return {
    async stop() {
      subscription.unsubscribe();
      await Promise.allSettled([...inflight]);
    },
  };
}
