/**
 * A registered twin type: the developer's class, checked once at registration, plus what the
 * runtime needs to validate input for it without activating any twin.
 */
import { z } from "zod";
import { describeIssues } from "../core/config-issues.ts";
import { toMillis } from "../core/duration.ts";
import { InvalidArgument, NotFound } from "../core/errors.ts";
import { validateType } from "../core/ids.ts";
import { isJsonObject, type Json, type JsonObject } from "../core/json.ts";
import { type Schema, Twin, type TwinClass, type TwinEvent } from "../core/twin.ts";

/** Names a command cannot take: the members every twin inherits. */
const RESERVED = new Set([...Object.getOwnPropertyNames(Twin.prototype), "apply", "initialState"]);

/** Node-wide defaults that a twin class's `static options` may override. */
export interface TypeDefaults {
  readonly snapshotEvery: number;
  readonly idleTimeoutMs: number;
}

/** True when `patch` deletes anything (holds a `null` at any depth). */
function hasNulls(patch: JsonObject): boolean {
  for (const key in patch) {
    const value = patch[key];
    if (value === null || (isJsonObject(value) && hasNulls(value))) return true;
  }
  return false;
}

/** `patch` without its deletions (`null` values): `patch` itself when it has none. */
function withoutNulls(patch: JsonObject): JsonObject {
  return hasNulls(patch) ? copyWithoutNulls(patch) : patch;
}

function copyWithoutNulls(patch: JsonObject): JsonObject {
  const out: Record<string, Json> = {};
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) continue;
    out[key] = isJsonObject(value) ? copyWithoutNulls(value) : value;
  }
  return out;
}

/** Paths (`a.b`) of `input` that `parsed` does not have: keys the schema dropped. */
function missingPaths(input: JsonObject, parsed: JsonObject, prefix: string, out: string[] = []): string[] {
  for (const key in input) {
    if (!Object.hasOwn(input, key)) continue;
    const value = input[key];
    if (!Object.hasOwn(parsed, key)) out.push(prefix ? `${prefix}.${key}` : key);
    else if (isJsonObject(value) && isJsonObject(parsed[key]))
      missingPaths(value, parsed[key] as JsonObject, prefix ? `${prefix}.${key}` : key, out);
  }
  return out;
}

/** `parsed` with the deletions (`null` values) of `patch` put back at their paths. */
function withDeletions(patch: JsonObject, parsed: JsonObject): JsonObject {
  const out: Record<string, Json> = { ...parsed };
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) out[key] = null;
    else if (isJsonObject(value) && isJsonObject(out[key]))
      out[key] = withDeletions(value, out[key] as JsonObject);
  }
  return out;
}

/** A twin type's schemas as JSON Schema (see {@link TwinType.describe}). */
export interface TypeSchemas {
  readonly commands: Readonly<Record<string, JsonObject>>;
  readonly reported?: JsonObject;
  readonly desired?: JsonObject;
}

function jsonSchemaOf(schema: Schema): JsonObject {
  const { $schema: _, ...rest } = z.toJSONSchema(schema, {
    io: "input",
    target: "draft-2020-12",
    unrepresentable: "any",
  }) as Record<string, unknown>;
  return rest as JsonObject;
}

export class TwinType {
  readonly name: string;
  readonly unknownReportedKeys: "refuse" | "strip";
  readonly cls: TwinClass;
  readonly commandNames: readonly string[];
  readonly snapshotEvery: number;
  readonly idleTimeoutMs: number;
  readonly #commands: ReadonlyMap<string, Schema>;
  #schemas: TypeSchemas | undefined;

  constructor(cls: TwinClass, defaults: TypeDefaults) {
    if (typeof cls !== "function") throw new InvalidArgument("a twin type must be a class extending Twin");
    const name = validateType(cls.type);
    this.name = name;
    this.cls = cls;
    const commands = cls.commands ?? {};
    const map = new Map<string, Schema>();
    for (const [command, schema] of Object.entries(commands)) {
      if (RESERVED.has(command) || /^on[A-Z]/.test(command)) {
        throw new InvalidArgument(
          `twin type '${name}': '${command}' cannot be a command name (it is a Twin member or a hook name)`,
        );
      }
      if (typeof cls.prototype[command as keyof Twin] !== "function") {
        throw new InvalidArgument(
          `twin type '${name}' declares command '${command}' but has no method '${command}'`,
        );
      }
      if (!(schema instanceof z.ZodType)) {
        throw new InvalidArgument(
          `twin type '${name}': command '${command}' needs a zod schema for its arguments`,
        );
      }
      map.set(command, schema);
    }
    this.#commands = map;
    this.commandNames = [...map.keys()].sort();
    const options = cls.options ?? {};
    this.unknownReportedKeys = options.unknownReportedKeys ?? "refuse";
    if (this.unknownReportedKeys !== "refuse" && this.unknownReportedKeys !== "strip") {
      throw new InvalidArgument(`twin type '${name}': unknownReportedKeys must be "refuse" or "strip"`);
    }
    this.snapshotEvery = options.snapshotEvery ?? defaults.snapshotEvery;
    if (!Number.isInteger(this.snapshotEvery) || this.snapshotEvery < 1) {
      throw new InvalidArgument(`twin type '${name}': snapshotEvery must be a positive integer`);
    }
    this.idleTimeoutMs =
      options.idleTimeout === undefined
        ? defaults.idleTimeoutMs
        : toMillis(options.idleTimeout, "idleTimeout");
  }

  /** A fresh instance of the developer's class. */
  instantiate(): Twin<object, TwinEvent, object> {
    return new this.cls();
  }

  /** Validates command arguments; returns the parsed value the handler receives. */
  parseCommand(command: string, args: JsonObject): unknown {
    const schema = this.#commands.get(command);
    if (!schema) {
      const known = this.commandNames.length ? this.commandNames.join(", ") : "none";
      throw new NotFound(`twin type '${this.name}' has no command '${command}' (commands: ${known})`, {
        type: this.name,
        command,
      });
    }
    const parsed = schema.safeParse(args);
    if (!parsed.success) {
      throw new InvalidArgument(
        `invalid arguments for ${this.name}.${command}: ${describeIssues(parsed.error, "")}`,
        {
          command,
          issues: parsed.error.issues.map((i) => ({ path: i.path.map(String), message: i.message })),
        },
      );
    }
    return parsed.data;
  }

  /**
   * The JSON Schemas (draft 2020-12, input side) of the command arguments and of reported and
   * desired patches, from the class's zod schemas: for forms and API documents. A part zod cannot
   * express in JSON Schema (a transform's output, a custom check) is left open (`{}`).
   */
  describe(): TypeSchemas {
    this.#schemas ??= {
      commands: Object.fromEntries(
        [...this.#commands].map(([command, schema]) => [command, jsonSchemaOf(schema)]),
      ),
      ...(this.cls.reported ? { reported: jsonSchemaOf(this.cls.reported) } : {}),
      ...((this.cls.desired ?? this.cls.reported)
        ? { desired: jsonSchemaOf((this.cls.desired ?? this.cls.reported) as Schema) }
        : {}),
    };
    return this.#schemas;
  }

  /** Validates the values a reported patch sets (nulls delete and are not validated). */
  checkReported(patch: JsonObject): void {
    this.#checkPatch(this.cls.reported, patch, "reported");
  }

  /**
   * Validates a reported patch and returns what is stored: the schema's parse result (defaults,
   * coercions), with the patch's deletions (`null`) kept. Keys the schema does not know are refused
   * with `InvalidArgument` naming them, or dropped when the type's `unknownReportedKeys` is `strip`.
   */
  parseReported(patch: JsonObject): JsonObject {
    const schema = this.cls.reported;
    if (!schema) return patch;
    const deletes = hasNulls(patch);
    const input = deletes ? copyWithoutNulls(patch) : patch;
    const parsed = this.#checkParsed(schema, input, "reported");
    if (!isJsonObject(parsed)) {
      throw new InvalidArgument(`the reported schema of '${this.name}' does not produce a JSON object`);
    }
    const unknown = missingPaths(input, parsed, "");
    if (unknown.length > 0 && this.unknownReportedKeys === "refuse") {
      const shown = unknown.slice(0, 10).join(", ") + (unknown.length > 10 ? ", ..." : "");
      throw new InvalidArgument(
        `invalid reported patch for '${this.name}': unknown field(s) ${shown} (not in the type's reported schema)`,
        { unknown: unknown.slice(0, 100) },
      );
    }
    return deletes ? withDeletions(patch, parsed) : parsed;
  }

  /** Validates the values a desired patch sets; uses the reported schema when no desired schema is given. */
  checkDesired(patch: JsonObject): void {
    this.#checkPatch(this.cls.desired ?? this.cls.reported, patch, "desired");
  }

  #checkPatch(schema: Schema | undefined, patch: JsonObject, what: string): unknown {
    if (!schema) return patch;
    return this.#checkParsed(schema, withoutNulls(patch), what);
  }

  /** Validates `input` (a patch without its deletions) with `schema`; returns the parse result. */
  #checkParsed(schema: Schema, input: JsonObject, what: string): unknown {
    const parsed = schema.safeParse(input);
    if (!parsed.success) {
      throw new InvalidArgument(
        `invalid ${what} patch for '${this.name}': ${describeIssues(parsed.error, what)}`,
        {
          issues: parsed.error.issues.map((i) => ({ path: i.path.map(String), message: i.message })),
        },
      );
    }
    return parsed.data;
  }
}

/** The twin types a node runs. Type names are unique. */
export class TwinRegistry {
  readonly #types = new Map<string, TwinType>();

  constructor(private readonly defaults: TypeDefaults) {}

  /** Registers a twin class; refuses a second class with the same type name. */
  register(cls: TwinClass): TwinType {
    const type = new TwinType(cls, this.defaults);
    const existing = this.#types.get(type.name);
    if (existing) {
      throw new InvalidArgument(
        `twin type '${type.name}' is already registered (by class ${existing.cls.name}); type names must be unique`,
      );
    }
    this.#types.set(type.name, type);
    return type;
  }

  /** The registered type `name`, or a `NotFound` naming the registered ones. */
  get(name: string): TwinType {
    const type = this.#types.get(name);
    if (!type) {
      const known = [...this.#types.keys()].sort().join(", ") || "none";
      throw new NotFound(`unknown twin type '${name}' (registered: ${known})`, { type: name });
    }
    return type;
  }

  has(name: string): boolean {
    return this.#types.has(name);
  }

  /** All registered types, by name. */
  list(): TwinType[] {
    return [...this.#types.values()].sort((a, b) => a.name.localeCompare(b.name));
  }
}
