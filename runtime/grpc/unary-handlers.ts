/**
 * The unary `TwinService` methods, each a thin translation of one shared operation
 * (`runtime/api/operations.ts`): request message → the operation's input → response message.
 * Proto3 conventions are undone here: an absent `optional` field or an empty string means "not given".
 */

import { OPERATIONS } from "../api/operations.ts";
import { type HandlerContext, unary } from "./calls.ts";
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

/** A proto3 number where 0 means "not set". */
function positive(value: number): number | undefined {
  return value === 0 ? undefined : value;
}

/** The twin a request names (for authorization, and the operation's twin). */
const twinOf = (request: { type: string; id: string }) => ({ type: request.type, id: request.id });
/** The type a request names (for authorization). */
const typeOf = (request: { type: string }) => ({ type: request.type });
const none = () => undefined;

/** The unary handlers. Every failure is answered with the mapped status (see `status.ts`). */
export function unaryHandlers(ctx: HandlerContext): UnaryHandlers {
  return {
    GetTwin: unary(ctx, OPERATIONS.getTwin, twinOf, twinOf, viewToTwin),

    QueryTwins: unary(
      ctx,
      OPERATIONS.queryTwins,
      typeOf,
      (request) => ({
        type: request.type,
        where: nonEmpty(request.where),
        limit: positive(request.limit),
        pageToken: nonEmpty(request.pageToken),
      }),
      (page) => ({ twins: page.views.map(viewToTwin), nextPageToken: page.nextPageToken ?? "" }),
    ),

    InvokeCommand: unary(
      ctx,
      OPERATIONS.invokeCommand,
      twinOf,
      (request) => ({
        ref: twinOf(request),
        command: request.command,
        args: structToJson(request.args, "args"),
        expectedVersion: request.expectedVersion,
      }),
      (outcome) => ({ result: jsonToValue(outcome.result), version: outcome.version }),
    ),

    UpdateDesired: unary(
      ctx,
      OPERATIONS.updateDesired,
      twinOf,
      (request) => ({
        ref: twinOf(request),
        patch: structToJson(request.patch, "patch"),
        expectedVersion: request.expectedVersion,
      }),
      viewToTwin,
    ),

    ReportState: unary(
      ctx,
      OPERATIONS.reportState,
      twinOf,
      (request) => ({
        ref: twinOf(request),
        patch: structToJson(request.patch, "patch"),
        messageId: nonEmpty(request.messageId),
        seq: positive(request.seq),
        at: positive(request.at),
      }),
      (outcome) => ({
        version: outcome.version,
        duplicate: outcome.duplicate,
        stale: outcome.stale === true,
      }),
    ),

    ListTypes: unary(ctx, OPERATIONS.listTypes, none, none, (types) => ({
      types: types.map((type) => ({ name: type.name, commands: [...type.commands] })),
    })),

    GetCluster: unary(ctx, OPERATIONS.getCluster, none, none, (view) => ({
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
    })),
  };
}
