/**
 * The gRPC contract as the gateway and the client load it: `proto/doppel/v1/twins.proto`, parsed
 * at run time by `@grpc/proto-loader`, typed by the code `scripts/gen-proto.sh` generates into
 * `./generated/`. Protobuf stays at this edge: nothing outside `runtime/grpc/` sees these shapes.
 */
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import type { TwinServiceClient, TwinServiceDefinition } from "./generated/doppel/v1/TwinService.ts";
import type { ProtoGrpcType } from "./generated/twins.ts";

/** Folder holding `doppel/v1/twins.proto` (the repository's `proto/`), found relative to this module. */
export const PROTO_ROOT = fileURLToPath(new URL("../../proto/", import.meta.url));

/** The contract file, relative to {@link PROTO_ROOT}. */
export const PROTO_FILE = "doppel/v1/twins.proto";

/** Fully qualified name of the service, as health checks and reflection name it. */
export const TWIN_SERVICE_NAME = "doppel.v1.TwinService";

/**
 * How messages look in JavaScript. `scripts/gen-proto.sh` passes the same flags to
 * `proto-loader-gen-types`; change both or neither.
 *
 * - `keepCase: false`: fields are camelCase (`expectedVersion`), like the rest of the code base.
 * - `longs: Number`: uint64 versions and Timestamp seconds become plain numbers. A twin's version
 *   and epoch seconds stay far below 2^53, so nothing is lost, and no `Long` leaks into the runtime.
 * - `enums: String`: enum values are their names (`"NULL_VALUE"`), readable in logs.
 * - `defaults: true`: absent scalars read as their proto3 default (`""`, `0`, `false`) and absent
 *   messages as `null`, so handlers never see `undefined` for a plain field. Fields declared
 *   `optional` (`expected_version`) stay absent when unset, which is how "not set" is told apart from 0.
 * - `oneofs: true`: `google.protobuf.Value` carries `kind` naming the field that is set.
 * - `includeDirs: [PROTO_ROOT]`: imports resolve against `proto/`. The well-known types the contract
 *   imports (`google/protobuf/{struct,timestamp,duration}.proto`) are bundled inside protobufjs and
 *   resolve without a file on disk.
 */
export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: false,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [PROTO_ROOT],
};

/** The loaded contract: the package definition (for reflection) and the typed gRPC objects. */
export interface Contract {
  readonly packageDefinition: protoLoader.PackageDefinition;
  /** The `TwinService` method definitions, for `server.addService`. */
  readonly service: TwinServiceDefinition;
  /** The generated client constructor for `TwinService`. */
  readonly Client: new (
    address: string,
    credentials: grpc.ChannelCredentials,
    options?: grpc.ChannelOptions,
  ) => TwinServiceClient;
}

let loaded: Contract | undefined;

/**
 * Loads (once per process) and returns the contract. Throws the loader's error if the proto file
 * is missing or does not parse, which is a packaging bug, not a runtime condition.
 */
export function loadContract(): Contract {
  if (loaded) return loaded;
  const packageDefinition = protoLoader.loadSync(PROTO_FILE, LOADER_OPTIONS);
  const grpcObject = grpc.loadPackageDefinition(packageDefinition) as unknown as ProtoGrpcType;
  const TwinService = grpcObject.doppel.v1.TwinService;
  loaded = { packageDefinition, service: TwinService.service, Client: TwinService };
  return loaded;
}
