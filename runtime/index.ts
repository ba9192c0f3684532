/**
 * Doppel's public surface. Twin authors, services embedding a node, and tests import only this.
 */

// Writing twins
export { z } from "zod";
export { InProcessBus, InProcessTransport } from "../cluster/transport/in-process.ts";
export { type NatsCredentials, NatsTransport, type NatsTransportOptions } from "../cluster/transport/nats.ts";
export type { Transport } from "../cluster/transport/transport.ts";
// Running nodes
export { type Clock, ManualClock, SystemClock } from "./core/clock.ts";
export type { Duration } from "./core/duration.ts";
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
  Quarantined,
  ResourceExhausted,
  Unavailable,
  VersionConflict,
  type WireError,
} from "./core/errors.ts";
export { MAX_ID_LENGTH, MAX_TYPE_LENGTH, parseRef, refKey, type TwinRef, twinRef } from "./core/ids.ts";
export type { Json, JsonObject, JsonPrimitive } from "./core/json.ts";
export type { EventRecord, TelemetrySample, TwinView } from "./core/records.ts";
export {
  type CheckedTwinClass,
  type CommandArgs,
  type CommandInput,
  type CommandName,
  type CommandResult,
  type DeviceCommandOptions,
  type Reminder,
  type ScheduleOptions,
  type Schema,
  Twin,
  type TwinClass,
  type TwinEvent,
  type TwinOptions,
  type When,
} from "./core/twin.ts";
export type {
  InvokeOptions,
  InvokeResult,
  QueryOptions,
  ReportOptions,
  ReportResult,
  TelemetryQuery,
  TwinApi,
} from "./core/twin-api.ts";
// Devices
export {
  type BufferPolicy,
  type CommandHandler,
  DeviceClient,
  type DeviceClientOptions,
  type DeviceClientStats,
  type DeviceConnectOptions,
  type ReportAck,
} from "./devices/client/device-client.ts";
export {
  DEVICE_PREFIX,
  type DesiredPush,
  DeviceChannel,
  deviceSubject,
  type SyncReply,
} from "./devices/protocol.ts";
export type { TwinChange } from "./engine/change-feed.ts";
// Services over gRPC
export {
  DoppelClient,
  type DoppelClientOptions,
  type HealthStatus,
  type HistoryQuery,
  type RemoteEvent,
  type TelemetryPoint,
  type TelemetryRequest,
  type WatchedChange,
} from "./grpc/client.ts";
export { type Gateway, type GatewayOptions, startGateway } from "./grpc/server.ts";
export { DoppelNode, type NodeParts } from "./node/node.ts";
export { compileConfig, type NodeConfig, type NodeConfigInput } from "./node/options.ts";
export type { EventStore, HistoryRange, ViewPage } from "./persistence/event-store.ts";
export { MemoryEventStore } from "./persistence/memory-store.ts";
export type { DeviceModel, DeviceStep, SimulatedDevice } from "./sim/device-model.ts";
export { Fleet, type FleetOptions, type FleetStats } from "./sim/fleet.ts";

// Testing twins
export { TestNode, type TestNodeOptions } from "./testing/test-node.ts";
