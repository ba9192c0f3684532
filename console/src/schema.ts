/**
 * Command forms from JSON Schema (what GET /v1/types/{type} gives for each command, converted from
 * the twin's zod schema): the fields of an object schema, their input kinds, and validation of the
 * operator's input against the same constraints, with one message per field.
 */
import type { Json, JsonObject } from "./json.ts";

export type FieldKind = "number" | "integer" | "boolean" | "enum" | "string" | "json";

export interface FormField {
  readonly name: string;
  readonly kind: FieldKind;
  readonly required: boolean;
  readonly description?: string;
  readonly options?: readonly Json[];
  readonly minimum?: number;
  readonly maximum?: number;
  readonly exclusiveMinimum?: number;
  readonly exclusiveMaximum?: number;
  readonly minLength?: number;
  readonly maxLength?: number;
  readonly pattern?: string;
}

const asNumber = (value: Json | undefined) => (typeof value === "number" ? value : undefined);

function kindOf(schema: JsonObject): FieldKind {
  if (Array.isArray(schema["enum"])) return "enum";
  if ("const" in schema) return "enum";
  switch (schema["type"]) {
    case "number":
      return "number";
    case "integer":
      return "integer";
    case "boolean":
      return "boolean";
    case "string":
      return "string";
    default:
      return "json";
  }
}

/** The fields of an object schema, in declaration order. */
export function fieldsOf(schema: JsonObject): FormField[] {
  const properties = (schema["properties"] ?? {}) as Record<string, JsonObject>;
  const required = new Set(Array.isArray(schema["required"]) ? (schema["required"] as string[]) : []);
  return Object.entries(properties).map(([name, property]) => {
    const kind = kindOf(property);
    const field: FormField = {
      name,
      kind,
      required: required.has(name),
      ...(typeof property["description"] === "string" ? { description: property["description"] } : {}),
      ...(kind === "enum"
        ? { options: Array.isArray(property["enum"]) ? property["enum"] : [property["const"] ?? null] }
        : {}),
    };
    const bounds: Record<string, number | string | undefined> = {
      minimum: asNumber(property["minimum"]),
      maximum: asNumber(property["maximum"]),
      exclusiveMinimum: asNumber(property["exclusiveMinimum"]),
      exclusiveMaximum: asNumber(property["exclusiveMaximum"]),
      minLength: asNumber(property["minLength"]),
      maxLength: asNumber(property["maxLength"]),
      pattern: typeof property["pattern"] === "string" ? property["pattern"] : undefined,
    };
    return Object.assign(
      field,
      Object.fromEntries(Object.entries(bounds).filter(([, value]) => value !== undefined)),
    ) as FormField;
  });
}

/** What a field's input holds: text for most kinds, a flag for booleans. */
export type FieldInput = string | boolean;

export interface Validated {
  readonly args: JsonObject;
  /** Field name → what is wrong with it (empty when the input is valid). */
  readonly errors: Readonly<Record<string, string>>;
}

/** The command's arguments from the form's inputs, or why they are not valid. */
export function validate(
  fields: readonly FormField[],
  inputs: Readonly<Record<string, FieldInput>>,
): Validated {
  const args: JsonObject = {};
  const errors: Record<string, string> = {};
  for (const field of fields) {
    const input = inputs[field.name];
    if (field.kind === "boolean") {
      if (input !== undefined || field.required) args[field.name] = input === true;
      continue;
    }
    const text = typeof input === "string" ? input.trim() : "";
    if (text === "") {
      if (field.required) errors[field.name] = "Required.";
      continue;
    }
    const problem = check(field, text, args);
    if (problem) errors[field.name] = problem;
  }
  return { args, errors };
}

/** Parses and checks one non-empty input into `args`; returns what is wrong, if anything. */
function check(field: FormField, text: string, args: JsonObject): string | undefined {
  switch (field.kind) {
    case "number":
    case "integer": {
      const value = Number(text);
      if (!Number.isFinite(value)) return "Must be a number.";
      if (field.kind === "integer" && !Number.isInteger(value)) return "Must be a whole number.";
      if (field.minimum !== undefined && value < field.minimum) return `Must be at least ${field.minimum}.`;
      if (field.maximum !== undefined && value > field.maximum) return `Must be at most ${field.maximum}.`;
      if (field.exclusiveMinimum !== undefined && value <= field.exclusiveMinimum)
        return `Must be more than ${field.exclusiveMinimum}.`;
      if (field.exclusiveMaximum !== undefined && value >= field.exclusiveMaximum)
        return `Must be less than ${field.exclusiveMaximum}.`;
      args[field.name] = value;
      return undefined;
    }
    case "enum": {
      const option = field.options?.find((candidate) => String(candidate) === text);
      if (option === undefined) return `Must be one of ${field.options?.map(String).join(", ")}.`;
      args[field.name] = option;
      return undefined;
    }
    case "string":
      if (field.minLength !== undefined && text.length < field.minLength)
        return `Must have at least ${field.minLength} characters.`;
      if (field.maxLength !== undefined && text.length > field.maxLength)
        return `Must have at most ${field.maxLength} characters.`;
      if (field.pattern !== undefined && !new RegExp(field.pattern, "u").test(text))
        return `Must match ${field.pattern}.`;
      args[field.name] = text;
      return undefined;
    default:
      try {
        args[field.name] = JSON.parse(text) as Json;
        return undefined;
      } catch {
        return "Must be JSON.";
      }
  }
}
