import { describe, expect, it } from "vitest";
import { z } from "zod";
import type { JsonObject } from "../../console/src/json.ts";
import { fieldsOf, validate } from "../../console/src/schema.ts";
import { Thermostat } from "../../twins/thermostat.ts";

/** A command's arguments schema as the REST API serves it: zod converted to JSON Schema. */
const schemaOf = (schema: z.ZodType) => z.toJSONSchema(schema) as unknown as JsonObject;

describe("console command forms", () => {
  it("a command form has one field per argument, with the schema's kind and bounds", () => {
    expect(fieldsOf(schemaOf(Thermostat.commands.setTarget))).toEqual([
      { name: "celsius", kind: "number", required: true, minimum: 5, maximum: 35 },
    ]);
    expect(fieldsOf(schemaOf(Thermostat.commands.boost))).toMatchObject([
      { name: "minutes", kind: "integer", required: true, minimum: 1, maximum: 240 },
    ]);
    expect(fieldsOf(schemaOf(Thermostat.commands.setMode))).toMatchObject([
      { name: "mode", kind: "enum", options: ["auto", "off"] },
    ]);
    expect(fieldsOf(schemaOf(Thermostat.commands.acknowledgeAlarm))).toEqual([]);
  });

  it("valid input becomes the command's typed arguments, which the zod schema accepts", () => {
    const fields = fieldsOf(schemaOf(Thermostat.commands.setTarget));
    const { args, errors } = validate(fields, { celsius: " 23.5 " });
    expect(errors).toEqual({});
    expect(args).toEqual({ celsius: 23.5 });
    expect(Thermostat.commands.setTarget.safeParse(args).success).toBe(true);
  });

  it("each invalid field gets its own message, as the zod schema would refuse it", () => {
    const target = fieldsOf(schemaOf(Thermostat.commands.setTarget));
    expect(validate(target, { celsius: "99" }).errors).toEqual({ celsius: "Must be at most 35." });
    expect(validate(target, { celsius: "1" }).errors).toEqual({ celsius: "Must be at least 5." });
    expect(validate(target, { celsius: "warm" }).errors).toEqual({ celsius: "Must be a number." });
    expect(validate(target, {}).errors).toEqual({ celsius: "Required." });
    expect(Thermostat.commands.setTarget.safeParse({ celsius: 99 }).success).toBe(false);

    const boost = fieldsOf(schemaOf(Thermostat.commands.boost));
    expect(validate(boost, { minutes: "2.5" }).errors).toEqual({ minutes: "Must be a whole number." });
    const mode = fieldsOf(schemaOf(Thermostat.commands.setMode));
    expect(validate(mode, { mode: "boost" }).errors).toEqual({ mode: "Must be one of auto, off." });
    expect(validate(mode, { mode: "off" }).args).toEqual({ mode: "off" });
  });

  it("strings, booleans and free-form JSON fields are checked too", () => {
    const fields = fieldsOf(
      schemaOf(
        z.object({
          name: z.string().min(2).max(4),
          on: z.boolean(),
          extra: z.record(z.string(), z.number()),
        }),
      ),
    );
    expect(fields.map((f) => f.kind)).toEqual(["string", "boolean", "json"]);
    expect(validate(fields, { name: "x", on: true, extra: "{" }).errors).toEqual({
      name: "Must have at least 2 characters.",
      extra: "Must be JSON.",
    });
    expect(validate(fields, { name: "abc", on: false, extra: '{"a": 1}' })).toEqual({
      args: { name: "abc", on: false, extra: { a: 1 } },
      errors: {},
    });
  });
});
