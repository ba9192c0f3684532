/**
 * Doppel records ↔ protobuf messages (`Twin`, `HistoryEvent`, `TelemetrySample`). The server turns
 * records into messages; the client turns messages back into plain records. Decoding is strict:
 * a malformed message fails with `InvalidArgument` (see `struct.ts`).
 */
import { InvalidArgument } from "../core/errors.ts";
import type { EventRecord, TwinView } from "../core/records.ts";
import type { HistoryEvent, HistoryEvent__Output } from "./generated/doppel/v1/HistoryEvent.ts";
import type {
  TelemetrySample__Output,
  TelemetrySample as TelemetrySampleMessage,
} from "./generated/doppel/v1/TelemetrySample.ts";
import type { Twin, Twin__Output } from "./generated/doppel/v1/Twin.ts";
import type { TwinChange__Output } from "./generated/doppel/v1/TwinChange.ts";
import { jsonToStruct, msToTimestamp, structToJson, timestampToMs } from "./struct.ts";

/** A twin's event as a client receives it: an {@link EventRecord} without the store-internal commit id. */
export type RemoteEvent = Omit<EventRecord, "commitId">;

/** A telemetry sample as a client receives it (raw, or one downsampled bucket). */
export interface TelemetryPoint {
  /** Epoch ms (for a bucket: its start). */
  readonly at: number;
  readonly metrics: Readonly<Record<string, number>>;
}

/** One item of a watch: the twin after a change and the change's events (none for the initial state). */
export interface WatchedChange {
  readonly twin: TwinView;
  readonly events: readonly RemoteEvent[];
}

/** Encodes a twin view as a `Twin` message. */
export function viewToTwin(view: TwinView): Twin {
  return {
    type: view.type,
    id: view.id,
    version: view.version,
    state: jsonToStruct(view.state),
    reported: jsonToStruct(view.reported),
    desired: jsonToStruct(view.desired),
    delta: jsonToStruct(view.delta),
    reportedAt: jsonToStruct(view.reportedAt ?? {}),
    createdAt: msToTimestamp(view.createdAt),
    updatedAt: msToTimestamp(view.updatedAt),
  };
}

/** Decodes a `Twin` message; unset structs are empty objects, unset timestamps 0. */
export function twinToView(twin: Twin__Output): TwinView {
  return {
    type: twin.type,
    id: twin.id,
    version: twin.version,
    state: structToJson(twin.state, "twin.state"),
    reported: structToJson(twin.reported, "twin.reported"),
    desired: structToJson(twin.desired, "twin.desired"),
    delta: structToJson(twin.delta, "twin.delta"),
    reportedAt: structToJson(twin.reportedAt, "twin.reported_at"),
    createdAt: timestampToMs(twin.createdAt, "twin.created_at") ?? 0,
    updatedAt: timestampToMs(twin.updatedAt, "twin.updated_at") ?? 0,
  };
}

/** Encodes an event as a `HistoryEvent` message (no causation: empty string). */
export function eventToMessage(event: EventRecord): HistoryEvent {
  return {
    version: event.seq,
    type: event.type,
    data: jsonToStruct(event.data),
    at: msToTimestamp(event.at),
    causation: event.causation ?? "",
    writerNode: event.writer.node,
    writerEpoch: event.writer.epoch,
    principal: event.principal ?? "",
  };
}

/** Decodes a `HistoryEvent` message; an empty causation becomes absent. */
export function messageToEvent(message: HistoryEvent__Output): RemoteEvent {
  const base = {
    seq: message.version,
    type: message.type,
    data: structToJson(message.data, "event.data"),
    at: timestampToMs(message.at, "event.at") ?? 0,
    writer: { node: message.writerNode, epoch: message.writerEpoch },
  };
  return {
    ...base,
    ...(message.causation === "" ? {} : { causation: message.causation }),
    ...(message.principal === "" ? {} : { principal: message.principal }),
  };
}

/** Encodes a telemetry sample. */
export function sampleToMessage(sample: TelemetryPoint): TelemetrySampleMessage {
  return { at: msToTimestamp(sample.at), metrics: { ...sample.metrics } };
}

/** Decodes a telemetry sample message. */
export function messageToSample(message: TelemetrySample__Output): TelemetryPoint {
  return { at: timestampToMs(message.at, "sample.at") ?? 0, metrics: { ...message.metrics } };
}

/** Decodes a `TwinChange` message; one without a twin is malformed (`InvalidArgument`). */
export function changeToWatched(change: TwinChange__Output): WatchedChange {
  if (change.twin === null) throw new InvalidArgument("twin change without a twin");
  return { twin: twinToView(change.twin), events: change.events.map(messageToEvent) };
}
