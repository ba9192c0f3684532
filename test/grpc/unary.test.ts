import { FailedPrecondition, NotFound, VersionConflict } from "doppel";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { type Harness, startHarness } from "./harness.ts";

const t1 = { type: "thermostat", id: "t1" };

describe("gateway unary calls", () => {
  let h: Harness;
  beforeEach(async () => {
    h = await startHarness();
  });
  afterEach(async () => {
    await h.stop();
  });

  it("GetTwin returns the persisted view with state, shadow and timestamps", async () => {
    await h.test.twins.report(t1, { temperature: 18, heating: false });
    const view = await h.client.getTwin(t1);
    expect(view).toEqual(await h.test.twins.get(t1));
    expect(view.desired).toEqual({ heating: true });
    expect(view.createdAt).toBe(h.test.clock.now());
  });

  it("GetTwin of a twin without events fails with NotFound", async () => {
    await expect(h.client.getTwin({ type: "thermostat", id: "never" })).rejects.toThrow(NotFound);
  });

  it("ReportState applies a patch and acknowledges a repeated message id as a duplicate", async () => {
    const first = await h.client.reportState(t1, { temperature: 25 }, { messageId: "m-1" });
    expect(first.duplicate).toBe(false);
    const again = await h.client.reportState(t1, { temperature: 25 }, { messageId: "m-1" });
    expect(again).toEqual({ version: first.version, duplicate: true });
    expect((await h.client.getTwin(t1)).reported).toEqual({ temperature: 25 });
  });

  it("InvokeCommand returns the handler's result and the twin's new version", async () => {
    await h.client.reportState(t1, { temperature: 22, heating: false });
    const before = await h.client.getTwin(t1);
    const outcome = await h.client.invoke(t1, "setTarget", { celsius: 24 });
    expect(outcome.result).toEqual({ setPoint: 24, heating: true });
    expect(outcome.version).toBeGreaterThan(before.version);
    expect((await h.client.getTwin(t1)).version).toBe(outcome.version);
  });

  it("InvokeCommand at the expected version runs, and at a stale one fails with VersionConflict", async () => {
    await h.client.reportState(t1, { temperature: 22 });
    const { version } = await h.client.getTwin(t1);
    const ok = await h.client.invoke(t1, "setTarget", { celsius: 23 }, { expectedVersion: version });
    expect(ok.version).toBeGreaterThan(version);
    const stale = h.client.invoke(t1, "setTarget", { celsius: 25 }, { expectedVersion: version });
    await expect(stale).rejects.toThrow(VersionConflict);
    await expect(stale).rejects.toMatchObject({ details: { expected: version, actual: ok.version } });
  });

  it("InvokeCommand with expected version 0 is not mistaken for 'no expectation'", async () => {
    await h.client.reportState(t1, { temperature: 22 });
    await expect(h.client.invoke(t1, "setTarget", { celsius: 23 }, { expectedVersion: 0 })).rejects.toThrow(
      VersionConflict,
    );
  });

  it("InvokeCommand reports a business rule refusal as FailedPrecondition", async () => {
    await h.client.reportState(t1, { temperature: 35 });
    await expect(h.client.invoke(t1, "acknowledgeAlarm")).rejects.toThrow(FailedPrecondition);
  });

  it("UpdateDesired merges a patch and returns the twin after it", async () => {
    await h.client.reportState(t1, { temperature: 22, heating: false });
    const { version } = await h.client.getTwin(t1);
    const view = await h.client.updateDesired(t1, { heating: true }, { expectedVersion: version });
    expect(view.desired).toEqual({ heating: true });
    expect(view.delta).toEqual({ heating: true });
    expect(view.version).toBe(version + 1);
    await expect(
      h.client.updateDesired(t1, { heating: false }, { expectedVersion: version }),
    ).rejects.toThrow(VersionConflict);
  });

  it("QueryTwins filters with where and pages with the token", async () => {
    for (const [id, temperature] of [
      ["a", 31],
      ["b", 20],
      ["c", 33],
      ["d", 40],
    ] as const) {
      await h.client.reportState({ type: "thermostat", id }, { temperature });
    }
    const first = await h.client.queryTwins("thermostat", { where: "reported.temperature > 30", limit: 2 });
    expect(first.twins.map((t) => t.id)).toEqual(["a", "c"]);
    expect(first.nextPageToken).toBeTruthy();
    const second = await h.client.queryTwins("thermostat", {
      where: "reported.temperature > 30",
      limit: 2,
      ...(first.nextPageToken ? { pageToken: first.nextPageToken } : {}),
    });
    expect(second.twins.map((t) => t.id)).toEqual(["d"]);
    expect(second.nextPageToken).toBeUndefined();
    const all = await h.client.queryTwins("thermostat");
    expect(all.twins).toHaveLength(4);
    expect(all.twins[0]).toEqual(await h.test.twins.get({ type: "thermostat", id: "a" }));
  });

  it("ListTypes lists the node's twin types with their commands", async () => {
    expect(await h.client.listTypes()).toEqual([
      { name: "thermostat", commands: ["acknowledgeAlarm", "boost", "setMode", "setTarget"] },
    ]);
  });

  it("Health reports SERVING for the server and for the twin service", async () => {
    expect(await h.client.health()).toBe("SERVING");
    expect(await h.client.health("doppel.v1.TwinService")).toBe("SERVING");
    await expect(h.client.health("no.such.Service")).rejects.toThrow(NotFound);
  });
});
