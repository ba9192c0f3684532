/**
 * `doppel/client`: services talk to a Doppel cluster over gRPC. Loads grpc-js and the contract
 * (proto), never the node, NATS or a store driver.
 */
export type { ClusterNodeView, ClusterView, ShardView } from "./core/cluster-view.ts";
export {
  DeadlineExceeded,
  DoppelError,
  ErrorCode,
  FailedPrecondition,
  InvalidArgument,
  NotFound,
  QuotaExceeded,
  ResourceExhausted,
  Unavailable,
  VersionConflict,
  type WireError,
} from "./core/errors.ts";
export { parseRef, refKey, type TwinRef, twinRef } from "./core/ids.ts";
export type { Json, JsonObject } from "./core/json.ts";
export type { TwinView } from "./core/records.ts";
export type { InvokeResult, ReportResult } from "./core/twin-api.ts";
export {
  DoppelClient,
  type DoppelClientOptions,
  type HealthStatus,
  type HistoryQuery,
  type RemoteEvent,
  type TelemetryPoint,
  type TelemetryRequest,
  type TypeInfo,
  type WatchedChange,
  type WatchOptions,
} from "./grpc/client.ts";
