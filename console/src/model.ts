/**
 * What the REST API answers, as the console reads it: the proto messages of proto/doppel/v1 in
 * camelCase JSON. 64-bit integers may arrive as numbers or as decimal strings (proto3 JSON):
 * {@link num} reads either.
 */
import type { JsonObject } from "./api.ts";

export interface Twin {
  readonly type: string;
  readonly id: string;
  readonly version: number | string;
  readonly state?: JsonObject;
  readonly reported?: JsonObject;
  readonly desired?: JsonObject;
  readonly delta?: JsonObject;
  readonly createdAt?: string;
  readonly updatedAt?: string;
}

export interface TwinPage {
  readonly twins: readonly Twin[];
  readonly nextPageToken?: string;
}

export interface TypeInfo {
  readonly name: string;
  readonly commands: readonly string[];
}

export interface TypeDetail extends TypeInfo {
  /** Command name → JSON Schema of its arguments. */
  readonly commandSchemas?: Readonly<Record<string, JsonObject>>;
  readonly desiredSchema?: JsonObject;
}

export interface ClusterNode {
  readonly id: string;
  readonly grpcAddress?: string;
  readonly startedAt?: string;
  readonly lastHeartbeat?: string;
  readonly residentTwins?: number | string;
  readonly shardsOwned?: number;
  readonly shardsAssigned?: number;
}

export interface ShardInfo {
  readonly shard: number;
  readonly assignedTo?: string;
  readonly holder?: string;
  readonly epoch?: number | string;
  readonly expiresInMs?: number | string;
}

export interface ClusterInfo {
  readonly name?: string;
  readonly shardCount: number;
  readonly self?: string;
  readonly nodes: readonly ClusterNode[];
  readonly shards: readonly ShardInfo[];
}

export interface HistoryEvent {
  readonly version: number | string;
  readonly type: string;
  readonly data?: JsonObject;
  readonly at?: string;
  readonly causation?: string;
  readonly writerNode?: string;
  readonly principal?: string;
}

export interface TwinChange {
  readonly twin: Twin;
  readonly events?: readonly HistoryEvent[];
}

export interface TelemetrySample {
  readonly at: string;
  readonly metrics: Readonly<Record<string, number>>;
}

/** A 64-bit count as a number (the API may send it as a string). */
export function num(value: number | string | undefined): number {
  return value === undefined ? 0 : Number(value);
}

/** The array in an answer that is either the array itself or an object holding it under `key`. */
export function listOf<T>(answer: unknown, key: string): T[] {
  if (Array.isArray(answer)) return answer as T[];
  const inner = (answer as Record<string, unknown> | null)?.[key];
  return Array.isArray(inner) ? (inner as T[]) : [];
}
