/**
 * The REST resources of twins, types and the cluster, each route a translation of one shared
 * operation (`runtime/api/operations.ts`). Versions travel as entity tags: a twin's `ETag` is
 * `"<version>"`, and `If-Match: "<version>"` on a write is the gRPC `expected_version` (a mismatch
 * answers 412 VERSION_CONFLICT).
 */
import { z } from "zod";
import { OPERATIONS } from "../api/operations.ts";
import { toMillis } from "../core/duration.ts";
import { NotFound } from "../core/errors.ts";
import type { JsonObject } from "../core/json.ts";
import {
  clusterJson,
  clusterSchema,
  commandName,
  eventJson,
  historyPageSchema,
  invokeResultSchema,
  sampleJson,
  telemetrySchema,
  twinId,
  twinJson,
  twinPageSchema,
  twinSchema,
  typeDetailJson,
  typeDetailSchema,
  typeJson,
  typeListSchema,
  typeName,
} from "./resources.ts";
import { type Route, route } from "./route.ts";

/** Most items one page of a list returns. */
export const MAX_PAGE = 1000;

const typeParams = z.object({ type: typeName });
const twinParams = z.object({ type: typeName, id: twinId });
const commandParams = twinParams.extend({ command: commandName });

// Patterns use [0-9], not \d: the OpenAPI document carries them to clients whose regex \d also
// matches other scripts' digits (Python's), which the server (JavaScript's \d) would refuse.
const etagHeader = {
  description: 'the twin\'s version as an entity tag: "<version>"',
  schema: z.string().regex(/^"[0-9]+"$/),
};
const etag = (version: number) => `"${version}"`;

/** `If-Match: "<version>"` (or `*`: any version). */
const ifMatch = z.object({
  "if-match": z
    .union(
      [
        z.literal("*"),
        z
          .string()
          .regex(/^"[0-9]{1,15}"$/, 'If-Match must be "<version>" (a twin version in double quotes) or *'),
      ],
      { error: 'If-Match must be "<version>" (a twin version in double quotes) or *' },
    )
    .optional()
    .describe('only if the twin is at this version: "<version>" (from its ETag); otherwise 412'),
});

/** The expected version an `If-Match` header names, if any. */
function expectedVersion(headers: z.infer<typeof ifMatch>): number | undefined {
  const value = headers["if-match"];
  return value === undefined || value === "*" ? undefined : Number(value.slice(1, -1));
}

const jsonObjectBody = z
  .record(z.string(), z.unknown())
  .describe("a JSON object")
  .transform((value) => value as JsonObject);

const count = (max: number) => z.coerce.number().int().min(1).max(max);

/** A time in a query: RFC 3339, or epoch milliseconds. */
const queryTime = z
  .union([z.iso.datetime({ offset: true }), z.string().regex(/^[0-9]{1,15}$/, "epoch milliseconds")])
  .describe("RFC 3339 time or epoch milliseconds")
  .transform((text) => (/^\d+$/.test(text) ? Number(text) : Date.parse(text)));

/** A duration in a query: `5m`, `30s`, `1h`, or milliseconds. */
const queryDuration = z
  .string()
  // Above zero by its pattern (no 0, 0s, 0.0m), so a client generating from the document sends none.
  .regex(
    /^([1-9][0-9]{0,11}|[1-9][0-9]{0,8}(\.[0-9]{1,3})?(ms|s|m|h|d)|0\.[0-9]{0,2}[1-9](ms|s|m|h|d))$/,
    "a duration above zero like 30s, 5m, 1h, or milliseconds",
  )
  .describe("a duration like 30s, 5m, 1h, or milliseconds")
  .transform((text) => (/^\d+$/.test(text) ? Number(text) : toMillis(text)))
  .refine((ms) => ms > 0, "must be above zero");

export const TWIN_ROUTES: readonly Route[] = [
  route({
    method: "GET",
    path: "/v1/types",
    operationId: "listTypes",
    summary: "The twin types this node runs, with their command names",
    tag: "types",
    response: { status: 200, description: "the types", schema: typeListSchema },
    problems: [],
    handle: async (call) => {
      const types = await call.perform(OPERATIONS.listTypes, undefined, () => undefined);
      return { body: { types: types.map(typeJson) } };
    },
  }),

  route({
    method: "GET",
    path: "/v1/types/{type}",
    operationId: "getType",
    summary: "A twin type with the JSON Schema of each command's arguments (for forms)",
    tag: "types",
    params: typeParams,
    response: { status: 200, description: "the type", schema: typeDetailSchema },
    problems: [403, 404],
    handle: async (call) => {
      const types = await call.perform(OPERATIONS.listTypes, { type: call.param("type") }, () =>
        call.parsed(),
      );
      const name = call.parsed().params.type;
      const detail = types.some((type) => type.name === name) ? call.ctx.describeType(name) : undefined;
      if (detail === undefined) throw new NotFound(`no twin type '${name}' on this node`, { type: name });
      return { body: typeDetailJson(detail) };
    },
  }),

  route({
    method: "GET",
    path: "/v1/cluster",
    operationId: "getCluster",
    summary: "The cluster as this node sees it: nodes, and which node holds each shard (scope admin)",
    tag: "cluster",
    response: { status: 200, description: "the cluster", schema: clusterSchema },
    problems: [403],
    handle: async (call) => ({
      body: clusterJson(await call.perform(OPERATIONS.getCluster, undefined, () => undefined)),
    }),
  }),

  route({
    method: "GET",
    path: "/v1/twins/{type}",
    operationId: "queryTwins",
    summary: "Twins of one type, filtered and paged",
    tag: "twins",
    params: typeParams,
    query: z.object({
      where: z
        .string()
        .max(4096)
        .optional()
        .describe("filter: e.g. `reported.temperature < 21 and state.heatingDemand == true`"),
      limit: count(MAX_PAGE).optional().describe(`page size, 1..${MAX_PAGE} (default 100)`),
      pageToken: z.string().max(4096).optional().describe("nextPageToken of the previous page"),
    }),
    response: { status: 200, description: "one page of twins", schema: twinPageSchema },
    problems: [403, 404],
    handle: async (call) => {
      const page = await call.perform(
        OPERATIONS.queryTwins,
        { type: call.param("type") },
        ({ params, query }) => ({
          type: params.type,
          where: query.where,
          limit: query.limit,
          pageToken: query.pageToken,
        }),
      );
      return {
        body: {
          twins: page.views.map(twinJson),
          ...(page.nextPageToken === undefined ? {} : { nextPageToken: page.nextPageToken }),
        },
      };
    },
  }),

  route({
    method: "GET",
    path: "/v1/twins/{type}/{id}",
    operationId: "getTwin",
    summary: "A twin: state, reported, desired, delta and version",
    tag: "twins",
    params: twinParams,
    response: {
      status: 200,
      description: "the twin",
      schema: twinSchema,
      headers: { etag: etagHeader },
    },
    problems: [403, 404],
    handle: async (call) => {
      const view = await call.perform(OPERATIONS.getTwin, call.twin(), ({ params }) => ({
        type: params.type,
        id: params.id,
      }));
      return { body: twinJson(view), headers: { etag: etag(view.version) } };
    },
  }),

  route({
    method: "PUT",
    path: "/v1/twins/{type}/{id}/desired",
    operationId: "updateDesired",
    summary: "Merge a patch into the twin's desired state (JSON merge patch: null deletes a leaf)",
    tag: "twins",
    params: twinParams,
    headers: ifMatch,
    body: jsonObjectBody,
    bodyTypes: ["application/json", "application/merge-patch+json"],
    response: {
      status: 200,
      description: "the twin after the patch",
      schema: twinSchema,
      headers: { etag: etagHeader },
    },
    problems: [403, 404, 412, 413, 415],
    handle: async (call) => {
      const view = await call.perform(OPERATIONS.updateDesired, call.twin(), ({ params, headers, body }) => ({
        ref: { type: params.type, id: params.id },
        patch: body,
        expectedVersion: expectedVersion(headers),
      }));
      return { body: twinJson(view), headers: { etag: etag(view.version) } };
    },
  }),

  route({
    method: "POST",
    path: "/v1/twins/{type}/{id}/commands/{command}",
    operationId: "invokeCommand",
    summary: "Run a command on a twin; answered once its events are persisted",
    tag: "twins",
    params: commandParams,
    headers: ifMatch,
    body: jsonObjectBody.optional().describe("the command's arguments (default {})"),
    response: {
      status: 200,
      description: "the command's result and the twin's version after it",
      schema: invokeResultSchema,
      headers: { etag: etagHeader },
    },
    problems: [403, 404, 409, 412, 413, 415],
    handle: async (call) => {
      const outcome = await call.perform(
        OPERATIONS.invokeCommand,
        call.twin(),
        ({ params, headers, body }) => ({
          ref: { type: params.type, id: params.id },
          command: params.command,
          args: body ?? {},
          expectedVersion: expectedVersion(headers),
        }),
      );
      return {
        body: { result: outcome.result, version: outcome.version },
        headers: { etag: etag(outcome.version) },
      };
    },
  }),

  route({
    method: "GET",
    path: "/v1/twins/{type}/{id}/history",
    operationId: "getHistory",
    summary: "A page of the twin's events, oldest first",
    tag: "twins",
    params: twinParams,
    query: z.object({
      from: count(Number.MAX_SAFE_INTEGER).optional().describe("first version (default 1)"),
      to: count(Number.MAX_SAFE_INTEGER).optional().describe("last version (default: the latest)"),
      since: queryTime.optional().describe("events at or after this time"),
      until: queryTime.optional().describe("events before this time"),
      limit: count(MAX_PAGE).optional().describe(`page size, 1..${MAX_PAGE} (default 100)`),
    }),
    response: { status: 200, description: "one page of events", schema: historyPageSchema },
    problems: [403, 404],
    handle: async (call) => {
      let limit = 100;
      const events = await call.perform(OPERATIONS.getHistory, call.twin(), ({ params, query }) => {
        limit = query.limit ?? 100;
        return {
          ref: { type: params.type, id: params.id },
          fromVersion: query.from,
          toVersion: query.to,
          since: query.since,
          until: query.until,
          limit,
        };
      });
      const last = events.at(-1);
      return {
        body: {
          events: events.map(eventJson),
          ...(last !== undefined && events.length === limit ? { nextFrom: last.seq + 1 } : {}),
        },
      };
    },
  }),

  route({
    method: "GET",
    path: "/v1/twins/{type}/{id}/telemetry",
    operationId: "getTelemetry",
    summary: "The twin's telemetry samples, raw or downsampled into buckets (min/max/avg/count)",
    tag: "twins",
    params: twinParams,
    query: z.object({
      metric: z
        .union([z.string().min(1).max(256), z.array(z.string().min(1).max(256)).max(64)])
        .optional()
        .describe(
          "only these metrics (repeat for several); a bucketed metric m is m.min, m.max, m.avg, m.count",
        ),
      from: queryTime.optional().describe("samples at or after this time (default: the beginning)"),
      to: queryTime.optional().describe("samples before this time (default: now)"),
      bucket: queryDuration.optional().describe("downsample into buckets this long"),
      limit: count(100_000).optional().describe("most samples (or buckets)"),
    }),
    response: { status: 200, description: "the samples, oldest first", schema: telemetrySchema },
    problems: [403, 404],
    handle: async (call) => {
      let metrics: ReadonlySet<string> | undefined;
      const samples = await call.perform(OPERATIONS.getTelemetry, call.twin(), ({ params, query }) => {
        if (query.metric !== undefined) metrics = new Set([query.metric].flat());
        return {
          ref: { type: params.type, id: params.id },
          since: query.from,
          until: query.to,
          limit: query.limit,
          intervalMs: query.bucket,
        };
      });
      return { body: { samples: samples.map((sample) => sampleJson(sample, metrics)) } };
    },
  }),
];
