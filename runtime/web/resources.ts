/**
 * The REST API's resources as zod schemas — the single definition the routes validate with and
 * the OpenAPI document is generated from — and the encoding of Doppel records into them. Field
 * names mirror the gRPC messages of `proto/doppel/v1/twins.proto` in camelCase (as the proto3
 * JSON mapping writes them); versions and counts are JSON numbers, times RFC 3339 strings.
 */
import { z } from "zod";
import type { TypeDetail, TypeInfo } from "../api/operations.ts";
import type { ClusterView } from "../core/cluster-view.ts";
import { MAX_ID_LENGTH, MAX_TYPE_LENGTH } from "../core/ids.ts";
import type { JsonObject } from "../core/json.ts";
import type { EventRecord, TelemetrySample, TwinView } from "../core/records.ts";

const jsonObject = z.record(z.string(), z.unknown());
const time = z.iso.datetime({ offset: true });
const version = z.number().int().min(0);

/** A twin type name, as `runtime/core/ids.ts` allows it. */
export const typeName = z
  .string()
  .regex(
    new RegExp(`^[A-Za-z][A-Za-z0-9_-]{0,${MAX_TYPE_LENGTH - 1}}$`),
    `a twin type is a letter, then letters, digits, '_' or '-' (at most ${MAX_TYPE_LENGTH})`,
  );
/** A twin id, as `runtime/core/ids.ts` allows it. */
export const twinId = z
  .string()
  .regex(
    new RegExp(`^[A-Za-z0-9_][A-Za-z0-9_:-]{0,${MAX_ID_LENGTH - 1}}$`),
    `a twin id is letters, digits, '_', '-' and ':', not starting with '-' or ':' (at most ${MAX_ID_LENGTH})`,
  );
/** A command name: a method of the twin class. */
export const commandName = z
  .string()
  .regex(/^[A-Za-z_$][A-Za-z0-9_$]{0,127}$/, "a command name is a JavaScript identifier");

export const twinSchema = z
  .object({
    type: z.string(),
    id: z.string(),
    version: version.describe("one per persisted event; the ETag of the twin"),
    state: jsonObject,
    reported: jsonObject,
    desired: jsonObject,
    delta: jsonObject.describe("desired leaves the device has not reported yet"),
    reportedAt: jsonObject.describe("per reported leaf, the device's time of it (epoch ms)"),
    createdAt: time,
    updatedAt: time,
  })
  .describe("A twin: its state and its shadow (reported, desired, delta)");

export const twinPageSchema = z.object({
  twins: z.array(twinSchema),
  nextPageToken: z.string().optional().describe("pass as pageToken for the next page; absent on the last"),
});

export const invokeResultSchema = z.object({
  result: z.unknown().describe("what the command returned (JSON)"),
  version: version.describe("the twin's version after the command's events"),
});

export const historyEventSchema = z.object({
  version: version,
  type: z.string(),
  data: jsonObject,
  at: time,
  causation: z.string().optional(),
  writerNode: z.string(),
  writerEpoch: z.number(),
  principal: z.string().optional().describe("who asked for it (audit trail)"),
});

export const historyPageSchema = z.object({
  events: z.array(historyEventSchema),
  nextFrom: version.optional().describe("pass as from for the next page; absent when the page was the last"),
});

export const telemetrySampleSchema = z.object({
  at: time.describe("the sample's time (a bucket: its start)"),
  metrics: z.record(z.string(), z.number()),
});
export const telemetrySchema = z.object({ samples: z.array(telemetrySampleSchema) });

export const typeInfoSchema = z.object({ name: z.string(), commands: z.array(z.string()) });
export const typeListSchema = z.object({ types: z.array(typeInfoSchema) });
export const typeDetailSchema = typeInfoSchema.extend({
  commandSchemas: z
    .record(z.string(), jsonObject)
    .describe("command → JSON Schema (draft 2020-12) of its arguments, from the twin class's zod schema"),
  reportedSchema: jsonObject.optional(),
  desiredSchema: jsonObject.optional(),
});

export const clusterSchema = z.object({
  name: z.string().describe('"" for a node that runs alone'),
  shardCount: z.number().int(),
  self: z.string(),
  nodes: z.array(
    z.object({
      id: z.string(),
      grpcAddress: z.string(),
      startedAt: time,
      lastHeartbeat: time,
      residentTwins: z.number().int(),
      shardsOwned: z.number().int(),
      shardsAssigned: z.number().int(),
    }),
  ),
  shards: z.array(
    z.object({
      shard: z.number().int(),
      assignedTo: z.string(),
      holder: z.string().describe('"" while no node holds the lease'),
      epoch: z.number(),
      expiresInMs: z.number().int(),
    }),
  ),
});

export const reportResultSchema = z.object({
  version: version,
  duplicate: z
    .boolean()
    .describe("nothing applied: the message id was already applied, or the report was stale"),
  stale: z.boolean().describe("dropped: its seq was at or below the twin's high-water mark"),
});
export const telemetryAckSchema = z.object({ accepted: z.number().int().describe("samples recorded") });

/** RFC 9457 problem details, with the stable Doppel error code (docs/errors.md). */
export const problemSchema = z
  .object({
    type: z.string(),
    title: z.string(),
    status: z.number().int(),
    detail: z.string(),
    code: z.string().describe("the stable Doppel error code: NOT_FOUND, VERSION_CONFLICT, ..."),
    details: jsonObject.optional(),
    instance: z.string().optional(),
  })
  .describe("RFC 9457 problem details");

const iso = (ms: number) => new Date(ms).toISOString();

export function twinJson(view: TwinView): z.infer<typeof twinSchema> {
  return {
    type: view.type,
    id: view.id,
    version: view.version,
    state: view.state,
    reported: view.reported,
    desired: view.desired,
    delta: view.delta,
    reportedAt: view.reportedAt ?? {},
    createdAt: iso(view.createdAt),
    updatedAt: iso(view.updatedAt),
  };
}

export function eventJson(event: Omit<EventRecord, "commitId">): z.infer<typeof historyEventSchema> {
  return {
    version: event.seq,
    type: event.type,
    data: event.data,
    at: iso(event.at),
    ...(event.causation === undefined ? {} : { causation: event.causation }),
    writerNode: event.writer.node,
    writerEpoch: event.writer.epoch,
    ...(event.principal === undefined ? {} : { principal: event.principal }),
  };
}

export function sampleJson(
  sample: Pick<TelemetrySample, "at" | "metrics">,
  metrics?: ReadonlySet<string>,
): z.infer<typeof telemetrySampleSchema> {
  const values =
    metrics === undefined
      ? { ...sample.metrics }
      : Object.fromEntries(
          Object.entries(sample.metrics).filter(
            ([name]) => metrics.has(name) || metrics.has(name.replace(/\.(min|max|avg|count)$/, "")),
          ),
        );
  return { at: iso(sample.at), metrics: values };
}

export function typeJson(type: TypeInfo): z.infer<typeof typeInfoSchema> {
  return { name: type.name, commands: [...type.commands] };
}

export function typeDetailJson(type: TypeDetail): z.infer<typeof typeDetailSchema> {
  return {
    ...typeJson(type),
    commandSchemas: { ...type.commandSchemas } as Record<string, JsonObject>,
    ...(type.reportedSchema ? { reportedSchema: type.reportedSchema } : {}),
    ...(type.desiredSchema ? { desiredSchema: type.desiredSchema } : {}),
  };
}

export function clusterJson(view: ClusterView): z.infer<typeof clusterSchema> {
  return {
    name: view.name,
    shardCount: view.shardCount,
    self: view.self,
    nodes: view.nodes.map((node) => ({
      id: node.id,
      grpcAddress: node.grpcAddress,
      startedAt: iso(node.startedAt),
      lastHeartbeat: iso(node.lastHeartbeat),
      residentTwins: node.residentTwins,
      shardsOwned: node.shardsOwned,
      shardsAssigned: node.shardsAssigned,
    })),
    shards: view.shards.map((shard) => ({ ...shard })),
  };
}
