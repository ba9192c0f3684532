/**
 * The unary `TwinService` methods, each a thin translation onto the `TwinApi`: request message →
 * validated-by-the-API call (with the gRPC deadline) → response message. Proto3 conventions are
 * undone here: an absent `optional` field or an empty string means "not given".
 */

import { present } from "../core/present.ts";
import { principalLabel } from "../core/principal.ts";
import { deadlineOf, type HandlerContext, unary } from "./calls.ts";
import type { TwinServiceHandlers } from "./generated/doppel/v1/TwinService.ts";
import { viewToTwin } from "./messages.ts";
import { jsonToValue, msToTimestamp, structToJson } from "./struct.ts";

type UnaryHandlers = Pick<
  TwinServiceHandlers,
  "GetTwin" | "QueryTwins" | "InvokeCommand" | "UpdateDesired" | "ReportState" | "ListTypes" | "GetCluster"
>;

/** `""` (proto3's "unset" for strings) → undefined. */
function nonEmpty(value: string): string | undefined {
  return value === "" ? undefined : value;
}

/** The twin a request names (for authorization). */
const twinOf = (request: { type: string; id: string }) => ({ type: request.type, id: request.id });
/** The type a request names (for authorization). */
const typeOf = (request: { type: string }) => ({ type: request.type });

/** The unary handlers. Every failure is answered with the mapped status (see `status.ts`). */
export function unaryHandlers(ctx: HandlerContext): UnaryHandlers {
  const { api } = ctx;
  return {
    GetTwin: unary(ctx, "GetTwin", { scope: "read", target: twinOf }, async (request) =>
      viewToTwin(await api.get({ type: request.type, id: request.id })),
    ),

    QueryTwins: unary(ctx, "QueryTwins", { scope: "read", target: typeOf }, async (request) => {
      const where = nonEmpty(request.where);
      const pageToken = nonEmpty(request.pageToken);
      const page = await api.query(request.type, {
        ...present({ where }),
        ...(request.limit === 0 ? {} : { limit: request.limit }),
        ...present({ pageToken }),
      });
      return { twins: page.views.map(viewToTwin), nextPageToken: page.nextPageToken ?? "" };
    }),

    InvokeCommand: unary(
      ctx,
      "InvokeCommand",
      { scope: "command", target: twinOf },
      async (request, call, caller) => {
        const args = structToJson(request.args, "args");
        const deadline = deadlineOf(call, ctx.clock);
        const outcome = await api.invoke({ type: request.type, id: request.id }, request.command, args, {
          ...present({ deadline, expectedVersion: request.expectedVersion }),
          principal: principalLabel(caller.principal),
        });
        return { result: jsonToValue(outcome.result), version: outcome.version };
      },
    ),

    UpdateDesired: unary(
      ctx,
      "UpdateDesired",
      { scope: "write", target: twinOf },
      async (request, call, caller) => {
        const patch = structToJson(request.patch, "patch");
        const deadline = deadlineOf(call, ctx.clock);
        const view = await api.updateDesired({ type: request.type, id: request.id }, patch, {
          ...present({ deadline, expectedVersion: request.expectedVersion }),
          principal: principalLabel(caller.principal),
        });
        return viewToTwin(view);
      },
    ),

    ReportState: unary(
      ctx,
      "ReportState",
      { scope: "write", target: twinOf },
      async (request, call, caller) => {
        const patch = structToJson(request.patch, "patch");
        const deadline = deadlineOf(call, ctx.clock);
        const messageId = nonEmpty(request.messageId);
        const outcome = await api.report({ type: request.type, id: request.id }, patch, {
          ...present({ deadline, messageId, seq: positive(request.seq), at: positive(request.at) }),
          principal: principalLabel(caller.principal),
        });
        return { version: outcome.version, duplicate: outcome.duplicate, stale: outcome.stale === true };
      },
    ),

    ListTypes: unary(ctx, "ListTypes", { scope: "read" }, () => ({
      types: ctx.types().map((type) => ({ name: type.name, commands: [...type.commands] })),
    })),

    GetCluster: unary(ctx, "GetCluster", { scope: "admin" }, async () => {
      const view = await ctx.cluster();
      return {
        name: view.name,
        shardCount: view.shardCount,
        self: view.self,
        nodes: view.nodes.map((node) => ({
          id: node.id,
          grpcAddress: node.grpcAddress,
          startedAt: msToTimestamp(node.startedAt),
          lastHeartbeat: msToTimestamp(node.lastHeartbeat),
          residentTwins: node.residentTwins,
          shardsOwned: node.shardsOwned,
          shardsAssigned: node.shardsAssigned,
        })),
        shards: view.shards.map((shard) => ({ ...shard })),
      };
    }),
  };
}

/** A proto3 number where 0 means "not set". */
function positive(value: number): number | undefined {
  return value === 0 ? undefined : value;
}
