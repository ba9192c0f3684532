/**
 * The unit of thick-edge replication (docs/edge.md): one batch of a twin's committed events, in
 * log order, with the twin's view after the last of them, as the edge's node wrote them. The edge
 * publishes batches on `doppel.edge-log.<edge>.<type>.<id>` into its log stream; the cloud's
 * replicator applies them to its own store. Decoding validates everything the replicator relies
 * on, so a malformed batch is refused with `InvalidArgument` before it touches a store.
 */
import { InvalidArgument } from "../core/errors.ts";
import { refKey, type TwinRef, twinRef, validateId } from "../core/ids.ts";
import { isJsonObject, type JsonObject } from "../core/json.ts";
import type { EventRecord, TwinView } from "../core/records.ts";
import { EDGE_LOG_PREFIX } from "../devices/edge/edge-stream.ts";

export interface ReplicatedBatch {
  /** The edge whose node wrote the events (its JetStream domain). */
  readonly edge: string;
  readonly ref: TwinRef;
  /** Consecutive events of the twin's log, ascending by `seq`. */
  readonly events: readonly EventRecord[];
  /** The twin's view after the last event (`view.version` = the last event's `seq`). */
  readonly view: TwinView;
}

/** The subject a batch of `ref` from `edge` is published on. */
export function edgeLogSubject(edge: string, ref: TwinRef): string {
  return `${EDGE_LOG_PREFIX}.${edge}.${ref.type}.${ref.id}`;
}

/** The subjects of every batch from `edge` (its log stream's). */
export function edgeLogSubjects(edge: string): string {
  return `${EDGE_LOG_PREFIX}.${edge}.>`;
}

/** The edge a batch's subject names (see {@link edgeLogSubject}), if it is one. */
export function edgeOfLogSubject(subject: string): string | undefined {
  const prefix = `${EDGE_LOG_PREFIX}.`;
  if (!subject.startsWith(prefix)) return undefined;
  const end = subject.indexOf(".", prefix.length);
  return end > prefix.length ? subject.slice(prefix.length, end) : undefined;
}

/** The JetStream message id of a batch: a batch republished with the same last seq is one message. */
export function batchMessageId(batch: ReplicatedBatch): string {
  return `${refKey(batch.ref)}/${batch.view.version}`;
}

export function encodeBatch(batch: ReplicatedBatch): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(batch));
}

function fail(message: string): never {
  throw new InvalidArgument(`replicated batch: ${message}`);
}

function decodeEvent(raw: unknown, index: number): EventRecord {
  if (!isJsonObject(raw)) fail(`event ${index} is not an object`);
  const { seq, type, data, at, commitId, causation, writer, principal } = raw;
  if (!Number.isSafeInteger(seq) || (seq as number) < 1) fail(`event ${index} has no valid seq`);
  if (typeof type !== "string" || !isJsonObject(data) || typeof at !== "number")
    fail(`event ${index} lacks type, data or at`);
  if (typeof commitId !== "string") fail(`event ${index} has no commitId`);
  if (!isJsonObject(writer) || typeof writer["node"] !== "string" || typeof writer["epoch"] !== "number")
    fail(`event ${index} has no writer`);
  return {
    seq: seq as number,
    type,
    data,
    at,
    commitId,
    ...(typeof causation === "string" ? { causation } : {}),
    writer: { node: writer["node"] as string, epoch: writer["epoch"] as number },
    ...(typeof principal === "string" ? { principal } : {}),
  };
}

function decodeView(raw: unknown, ref: TwinRef): TwinView {
  if (!isJsonObject(raw)) fail("view is not an object");
  const { type, id, version, state, reported, desired, delta, reportedAt, createdAt, updatedAt } = raw;
  if (type !== ref.type || id !== ref.id)
    fail(`view is of ${String(type)}/${String(id)}, not ${refKey(ref)}`);
  const objects = [state, reported, desired, delta];
  if (!objects.every(isJsonObject)) fail("view lacks state, reported, desired or delta");
  if (typeof version !== "number" || typeof createdAt !== "number" || typeof updatedAt !== "number")
    fail("view lacks version, createdAt or updatedAt");
  return {
    type: ref.type,
    id: ref.id,
    version,
    state: state as JsonObject,
    reported: reported as JsonObject,
    desired: desired as JsonObject,
    delta: delta as JsonObject,
    ...(isJsonObject(reportedAt) ? { reportedAt } : {}),
    createdAt,
    updatedAt,
  };
}

/**
 * Parses a batch. Throws `InvalidArgument` when it is not JSON, an id is invalid, the events are
 * empty or not consecutive, or the view is not the twin's at the last event.
 */
export function decodeBatch(bytes: Uint8Array): ReplicatedBatch {
  let raw: unknown;
  try {
    raw = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    fail("not JSON");
  }
  if (!isJsonObject(raw)) fail("not an object");
  const edge = validateId(raw["edge"]);
  const refRaw = raw["ref"];
  if (!isJsonObject(refRaw)) fail("no ref");
  const ref = twinRef(refRaw["type"], refRaw["id"]);
  const eventsRaw = raw["events"];
  if (!Array.isArray(eventsRaw) || eventsRaw.length === 0) fail("no events");
  const events = eventsRaw.map(decodeEvent);
  for (const [i, event] of events.entries()) {
    if (i > 0 && event.seq !== events[i - 1]!.seq + 1) fail(`events are not consecutive at seq ${event.seq}`);
  }
  const view = decodeView(raw["view"], ref);
  if (view.version !== events.at(-1)!.seq)
    fail(`view version ${view.version} is not the last event's seq ${events.at(-1)!.seq}`);
  return { edge, ref, events, view };
}
