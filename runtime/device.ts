/**
 * `doppel/device`: firmware and gateways. `DeviceClient` reports state and telemetry, receives
 * desired state and commands, buffers while offline and re-syncs on reconnect; the device protocol
 * (subjects, payloads) and its codecs (JSON, protobuf) for devices that speak it directly. Loads the
 * core and the NATS client, none of the server.
 */
export { type NatsCredentials, NatsTransport, type NatsTransportOptions } from "../cluster/transport/nats.ts";
export type { Transport } from "../cluster/transport/transport.ts";
export { DoppelError, ErrorCode, type WireError } from "./core/errors.ts";
export { parseRef, refKey, type TwinRef, twinRef } from "./core/ids.ts";
export type { Json, JsonObject } from "./core/json.ts";
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
  decodeDeviceState,
  type Encoding,
  encodeDeviceState,
  encodeProtobuf,
  encodingHeaders,
  JSON_TYPE,
  PROTOBUF_TYPE,
} from "./devices/payload-codec.ts";
export {
  DEVICE_PREFIX,
  type DesiredPush,
  DeviceChannel,
  type DeviceCommand,
  type DeviceCommandReply,
  deviceSubject,
  type ReportReply,
  type SyncReply,
} from "./devices/protocol.ts";
