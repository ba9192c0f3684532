/**
 * Server reflection that grpcurl can use. Two gaps of the stock setup are closed here:
 *
 * - proto-loader leaves every `FileDescriptorProto.dependency` list empty (grpc/grpc-node#2595),
 *   so a reflection client cannot link `doppel.v1.Twin.state` to `google.protobuf.Struct`, and
 *   `grpcurl describe` fails with "cannot resolve type". {@link linkDependencies} fills the lists
 *   in from the type references each file makes.
 * - protobufjs names the entry type of map field `fields` `Fields`, where protoc (and Go's
 *   descriptor validation, which grpcurl runs) wants `FieldsEntry`; and it describes a proto3
 *   `optional` field as a plain one-field oneof. Both are rewritten to what protoc would emit.
 * - `@grpc/reflection` lists only the services of the package definition it is given, so the
 *   health and reflection services are added to it, and `grpcurl ... grpc.health.v1.Health/Check`
 *   works too.
 *
 * Descriptors are built from the protos loaded with `keepCase: true`, so reflection shows the
 * field names of the `.proto` (`expected_version`), not the camelCase the gateway's code uses.
 */
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import type * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { ReflectionService } from "@grpc/reflection";
import { protoPath as healthProtoPath } from "grpc-health-check";
import descriptor, { type IDescriptorProto, type IFileDescriptorProto } from "protobufjs/ext/descriptor.js";
import type { Logger } from "../observability/logger.ts";
import { LOADER_OPTIONS, PROTO_FILE } from "./proto.ts";

const FileDescriptorProto = descriptor.FileDescriptorProto;

interface FileEntry {
  readonly original: Buffer;
  readonly proto: IFileDescriptorProto;
}

/** The file descriptors a package-definition entry carries (messages and enums do, services do not). */
function filesOf(entry: protoLoader.AnyDefinition): readonly Buffer[] | undefined {
  const files: unknown = (entry as { fileDescriptorProtos?: unknown }).fileDescriptorProtos;
  return Array.isArray(files) && files.every((f) => Buffer.isBuffer(f)) ? (files as Buffer[]) : undefined;
}

/** Every message and enum a message declares (itself included), with its fully qualified name. */
function* declared(message: IDescriptorProto, scope: string): Generator<string> {
  const name = `${scope}.${message.name ?? ""}`;
  yield name;
  for (const e of message.enumType ?? []) yield `${name}.${e.name ?? ""}`;
  for (const nested of message.nestedType ?? []) yield* declared(nested, name);
}

/** Every type name a message's fields refer to, with the scope each is resolved in. */
function* references(message: IDescriptorProto, scope: string): Generator<[string, string]> {
  const name = `${scope}.${message.name ?? ""}`;
  for (const field of [...(message.field ?? []), ...(message.extension ?? [])]) {
    if (field.typeName) yield [field.typeName, name];
  }
  for (const nested of message.nestedType ?? []) yield* references(nested, name);
}

/** protoc's name for the entry type of map field `field`: `statuses` → `StatusesEntry`, `my_map` → `MyMapEntry`. */
function mapEntryName(field: string): string {
  const camel = field.replace(/_+([a-zA-Z0-9])/g, (_, ch: string) => ch.toUpperCase());
  return `${camel.charAt(0).toUpperCase()}${camel.slice(1)}Entry`;
}

/**
 * Rewrites a message (and its nested messages), in place, the way protoc would have described it:
 * map entry types named `<Field>Entry`, and the field of each synthetic oneof (`_name` holding only
 * `name`) marked `proto3_optional`.
 */
function protocStyle(message: IDescriptorProto): void {
  const oneofs = message.oneofDecl ?? [];
  for (const field of message.field ?? []) {
    if (field.oneofIndex === undefined || field.oneofIndex === null) continue;
    const oneof = oneofs[field.oneofIndex];
    const members = (message.field ?? []).filter((f) => f.oneofIndex === field.oneofIndex);
    if (oneof?.name === `_${field.name}` && members.length === 1) field.proto3Optional = true;
  }
  for (const nested of message.nestedType ?? []) {
    protocStyle(nested);
    if (!nested.options?.mapEntry || !nested.name) continue;
    const old = nested.name;
    const field = (message.field ?? []).find(
      (f) => f.typeName === old || f.typeName?.endsWith(`.${old}`) === true,
    );
    if (!field?.name || !field.typeName) continue;
    const name = mapEntryName(field.name);
    nested.name = name;
    field.typeName = `${field.typeName.slice(0, field.typeName.length - old.length)}${name}`;
  }
}

/** Resolves a type reference as protoc does: absolute (`.a.B`), or relative, searched outwards from `scope`. */
function resolve(reference: string, scope: string, index: ReadonlyMap<string, string>): string | undefined {
  if (reference.startsWith(".")) return index.get(reference);
  for (let s = scope; ; s = s.slice(0, s.lastIndexOf("."))) {
    const file = index.get(`${s}.${reference}`);
    if (file !== undefined) return file;
    if (s === "") return undefined;
  }
}

/**
 * Returns a copy of `definition` whose file descriptors list the files they depend on. Entries
 * that carry no descriptors are kept as they are; `definition` itself is not modified.
 */
export function linkDependencies(definition: protoLoader.PackageDefinition): protoLoader.PackageDefinition {
  const files = new Map<string, FileEntry>();
  for (const entry of Object.values(definition)) {
    for (const original of filesOf(entry) ?? []) {
      const proto = FileDescriptorProto.toObject(
        FileDescriptorProto.decode(original),
      ) as IFileDescriptorProto;
      for (const message of proto.messageType ?? []) protocStyle(message);
      if (proto.name && !files.has(proto.name)) files.set(proto.name, { original, proto });
    }
  }
  const owner = new Map<string, string>();
  for (const [name, { proto }] of files) {
    const scope = proto.package ? `.${proto.package}` : "";
    for (const message of proto.messageType ?? [])
      for (const fqn of declared(message, scope)) owner.set(fqn, name);
    for (const e of proto.enumType ?? []) owner.set(`${scope}.${e.name ?? ""}`, name);
  }
  const encoded = new Map<Buffer, Buffer>();
  for (const [name, { original, proto }] of files) {
    const scope = proto.package ? `.${proto.package}` : "";
    const refs: [string, string][] = [];
    for (const message of proto.messageType ?? []) refs.push(...references(message, scope));
    for (const service of proto.service ?? []) {
      for (const method of service.method ?? []) {
        if (method.inputType) refs.push([method.inputType, scope]);
        if (method.outputType) refs.push([method.outputType, scope]);
      }
    }
    const dependencies = new Set<string>();
    for (const [reference, where] of refs) {
      const file = resolve(reference, where, owner);
      if (file !== undefined && file !== name) dependencies.add(file);
    }
    const linked = FileDescriptorProto.fromObject({ ...proto, dependency: [...dependencies].sort() });
    encoded.set(original, Buffer.from(FileDescriptorProto.encode(linked).finish()));
  }
  const out: protoLoader.PackageDefinition = {};
  for (const [key, entry] of Object.entries(definition)) {
    const descriptors = filesOf(entry);
    out[key] =
      descriptors === undefined
        ? entry
        : ({
            ...entry,
            fileDescriptorProtos: descriptors.map((b) => encoded.get(b) ?? b),
          } as protoLoader.AnyDefinition);
  }
  return out;
}

/** The reflection protocol's own proto (v1), which `@grpc/reflection` ships but does not describe. */
function reflectionProtoPath(): string {
  const main = createRequire(import.meta.url).resolve("@grpc/reflection");
  return join(dirname(main), "..", "proto", "grpc", "reflection", "v1", "reflection.proto");
}

/**
 * Adds server reflection describing `doppel.v1.TwinService` plus the health and reflection
 * services. Throws if the contract does not load (as `loadContract` would). If only the extra
 * protos cannot be found (a packaging change in those libraries), reflection still describes the
 * contract and a warning is logged.
 */
export function addReflection(server: grpc.Server, logger: Logger): void {
  const options: protoLoader.Options = { ...LOADER_OPTIONS, keepCase: true };
  let described = protoLoader.loadSync(PROTO_FILE, options);
  try {
    const external = { ...options, includeDirs: [] };
    described = {
      ...described,
      ...protoLoader.loadSync(healthProtoPath, external),
      ...protoLoader.loadSync(reflectionProtoPath(), external),
    };
  } catch (error) {
    logger.warn({ err: error }, "reflection will not describe the health and reflection services");
  }
  new ReflectionService(linkDependencies(described)).addToServer(server);
}
