/**
 * `doppel`: what twin authors import. A twin class, its schemas (zod), the errors a handler may
 * throw, durations, twin ids and the record types a twin sees. Loads the core only: no engine, no
 * store, no network.
 *
 * The other entry points: `doppel/testing` (TestNode, manual clock), `doppel/node` (run a node),
 * `doppel/client` (services over gRPC), `doppel/device` (firmware and gateways).
 */
export { z } from "zod";
export { type Duration, toMillis } from "./core/duration.ts";
export type { Aggregate, EdgeOptions, MetricReduction } from "./core/edge-telemetry.ts";
export {
  CallCycle,
  ConcurrencyConflict,
  DeadlineExceeded,
  DoppelError,
  ErrorCode,
  type ErrorDetails,
  FailedPrecondition,
  HandlerFailed,
  Internal,
  InvalidArgument,
  NotFound,
  PermissionDenied,
  Quarantined,
  QuotaExceeded,
  ResourceExhausted,
  Unauthenticated,
  Unavailable,
  VersionConflict,
  type WireError,
} from "./core/errors.ts";
export { MAX_ID_LENGTH, MAX_TYPE_LENGTH, parseRef, refKey, type TwinRef, twinRef } from "./core/ids.ts";
export type { Json, JsonObject, JsonPrimitive } from "./core/json.ts";
export type { EventRecord, TelemetrySample, TwinChange, TwinView } from "./core/records.ts";
export {
  type CheckedTwinClass,
  type CommandArgs,
  type CommandInput,
  type CommandName,
  type CommandResult,
  type DeviceCommandOptions,
  type DeviceCommandResult,
  type DeviceCommandSent,
  type QueuedDeviceCommandOptions,
  type Reminder,
  type ScheduleOptions,
  type Schema,
  Twin,
  type TwinClass,
  type TwinEvent,
  type TwinOptions,
  type When,
} from "./core/twin.ts";
