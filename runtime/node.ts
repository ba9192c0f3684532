/**
 * `doppel/node`: embed and run a node. `DoppelNode.start(config, { twins })` with a configuration
 * compiled by `compileConfig` (the same schema as `doppel start --config`), the event stores and
 * transports to pass in instead, the simulated fleet, and the twin API a node serves.
 */
export { InProcessBus, InProcessTransport } from "../cluster/transport/in-process.ts";
export { type NatsCredentials, NatsTransport, type NatsTransportOptions } from "../cluster/transport/nats.ts";
export type { Transport } from "../cluster/transport/transport.ts";
export { type Clock, ManualClock, SystemClock } from "./core/clock.ts";
export type { ClusterNodeView, ClusterView, ShardView } from "./core/cluster-view.ts";
export type { ShardOwnership } from "./core/ownership.ts";
export type {
  EventRecord,
  HistoryRange,
  TelemetrySample,
  TwinChange,
  TwinView,
  ViewPage,
} from "./core/records.ts";
export type {
  InvokeOptions,
  InvokeResult,
  QueryOptions,
  ReportOptions,
  ReportResult,
  TelemetryQuery,
  TwinApi,
} from "./core/twin-api.ts";
export type { EdgeStatus } from "./devices/edge/edge-forwarder.ts";
export {
  type LeafDeviceAuth,
  type LeafServerOptions,
  type LeafUser,
  leafServerConfig,
} from "./devices/edge/leaf-config.ts";
export { type Gateway, type GatewayOptions, startGateway } from "./grpc/server.ts";
export { EdgeNode } from "./node/edge-node.ts";
export { DoppelNode, type NodeParts, type NodeService } from "./node/node.ts";
export { compileConfig, type NodeConfig, type NodeConfigInput } from "./node/options.ts";
export type { Logger } from "./observability/logger.ts";
export { CassandraEventStore } from "./persistence/cassandra/store.ts";
export type { EventStore } from "./persistence/event-store.ts";
export { MemoryEventStore } from "./persistence/memory-store.ts";
export { SqliteEventStore } from "./persistence/sqlite-store.ts";
export type { DeviceModel, DeviceStep, SimulatedDevice } from "./sim/device-model.ts";
export { Fleet, type FleetOptions, type FleetStats } from "./sim/fleet.ts";
