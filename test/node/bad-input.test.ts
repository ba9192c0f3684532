import { InvalidArgument, type JsonObject, NotFound, VersionConflict } from "doppel";
import { TestNode } from "doppel/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Thermostat } from "../../twins/thermostat.ts";

describe("bad input to the twin API", () => {
  let test: TestNode;
  beforeAll(async () => {
    test = await TestNode.start({ twins: [Thermostat], config: { limits: { maxPayloadBytes: 1024 } } });
    goodVersion = (await test.twins.invoke(good, "setTarget", { celsius: 20 })).version;
  });
  afterAll(async () => {
    await test.stop();
  });

  const good = { type: "thermostat", id: "good" };
  let goodVersion = 0;

  /** Nothing was written: only the good twin has a view, it did not move, no other twin is resident; and the node still serves. */
  async function nothingWritten(): Promise<void> {
    const page = await test.twins.query("thermostat", { limit: 1000 });
    expect(page.views.map((v) => v.id)).toEqual(["good"]);
    expect((await test.twins.get(good)).version).toBe(goodVersion);
    expect([...test.node.engine.catalog.activations()].map((a) => a.id)).toEqual(["good"]);
    goodVersion = (await test.twins.report(good, { temperature: 20 })).version;
  }

  it.each([
    ["a.b", "'.' at position 2"],
    ["a*b", "'*' at position 2"],
    ["a>", "'>' at position 2"],
    ["a/b", "'/' at position 2"],
    ["a b", "whitespace"],
    ["a\nb", "control character U+000A"],
    ["", "twin id is empty"],
    ["x".repeat(200), "200 characters long; the limit is 128"],
  ])("refuses twin id %j precisely and writes nothing", async (id, message) => {
    const ref = { type: "thermostat", id };
    await expect(test.twins.invoke(ref, "setTarget", { celsius: 20 })).rejects.toThrow(message);
    await expect(test.twins.report(ref, { temperature: 20 })).rejects.toThrow(InvalidArgument);
    await expect(test.twins.updateDesired(ref, { heating: true })).rejects.toThrow(InvalidArgument);
    await expect(test.twins.get(ref)).rejects.toThrow(InvalidArgument);
    await nothingWritten();
  });

  it("refuses an unknown type, naming the registered ones", async () => {
    await expect(test.twins.invoke({ type: "toaster", id: "t1" }, "toast", {})).rejects.toThrow(
      "unknown twin type 'toaster' (registered: thermostat)",
    );
    await expect(test.twins.query("toaster")).rejects.toThrow(NotFound);
    await nothingWritten();
  });

  it("refuses an unknown command, naming the known ones", async () => {
    await expect(test.twins.invoke({ type: "thermostat", id: "t2" }, "explode", {})).rejects.toThrow(
      "twin type 'thermostat' has no command 'explode' (commands: acknowledgeAlarm, boost, setMode, setTarget)",
    );
    await nothingWritten();
  });

  it("refuses arguments that fail validation, naming the field", async () => {
    const ref = { type: "thermostat", id: "t2" };
    await expect(test.twins.invoke(ref, "setTarget", { celsius: 99 })).rejects.toThrow(
      "invalid arguments for thermostat.setTarget: celsius: Too big",
    );
    await expect(test.twins.invoke(ref, "setTarget", { celsius: "warm" })).rejects.toThrow("celsius:");
    await expect(test.twins.invoke(ref, "setTarget", [] as unknown as JsonObject)).rejects.toThrow(
      "arguments must be a JSON object, got an array",
    );
    await nothingWritten();
  });

  it("refuses reported and desired patches that fail the twin's schema", async () => {
    const ref = { type: "thermostat", id: "t2" };
    await expect(test.twins.report(ref, { temperature: "hot" })).rejects.toThrow(
      "invalid reported patch for 'thermostat': reported.temperature:",
    );
    await expect(test.twins.updateDesired(ref, { heating: "yes" })).rejects.toThrow("desired.heating:");
    await nothingWritten();
  });

  it("refuses oversized and too deeply nested payloads", async () => {
    const ref = { type: "thermostat", id: "t2" };
    await expect(test.twins.report(ref, { firmware: "x".repeat(2000) })).rejects.toThrow(
      /reported patch is \d+ bytes; the limit is 1024/,
    );
    let deep: JsonObject = { leaf: 1 };
    for (let i = 0; i < 40; i++) deep = { d: deep };
    await expect(test.twins.updateDesired(ref, deep)).rejects.toThrow("nested deeper than 32 levels");
    await nothingWritten();
  });

  it("refuses malformed filter expressions with the column", async () => {
    await expect(test.twins.query("thermostat", { where: "reported.temperature >" })).rejects.toThrow(
      "filter: at column 23",
    );
    await expect(test.twins.query("thermostat", { where: "temperature > 3" })).rejects.toThrow(
      "unknown field root 'temperature'",
    );
    await expect(test.twins.query("thermostat", { limit: 5000 })).rejects.toThrow(
      "the largest allowed is 1000",
    );
    await expect(test.twins.query("thermostat", { pageToken: "garbage!" })).rejects.toThrow(
      "page token is malformed",
    );
  });

  it("refuses a stale expected version with the current one in the error", async () => {
    const ref = { type: "thermostat", id: "good" };
    const current = (await test.twins.get(ref)).version;
    const attempt = test.twins.updateDesired(ref, { heating: true }, { expectedVersion: current - 1 });
    await expect(attempt).rejects.toBeInstanceOf(VersionConflict);
    await expect(
      test.twins.updateDesired(ref, { heating: true }, { expectedVersion: current - 1 }),
    ).rejects.toThrow(`expected version ${current - 1}, but it is at ${current}`);
    expect((await test.twins.get(ref)).version).toBe(current);
  });

  it("refuses a call whose deadline passed before it started, running nothing", async () => {
    const before = (await test.twins.get(good)).version;
    const past = () => test.node.engine.clock.now() - 1;
    await expect(test.twins.report(good, { temperature: 25 }, { deadline: past() })).rejects.toMatchObject({
      code: "DEADLINE_EXCEEDED",
    });
    await expect(
      test.twins.invoke(good, "setTarget", { celsius: 25 }, { deadline: past() }),
    ).rejects.toMatchObject({ code: "DEADLINE_EXCEEDED" });
    await expect(
      test.twins.updateDesired(good, { heating: true }, { deadline: past() }),
    ).rejects.toMatchObject({ code: "DEADLINE_EXCEEDED" });
    expect((await test.twins.get(good)).version).toBe(before);
  });
});
