import { describe, expect, it } from "vitest";
import { edgeInboxPrefix } from "../../../runtime/devices/edge/edge-subjects.ts";
import {
  hubAuthorizationConfig,
  hubEdgePermissions,
  hubEdgeUsers,
} from "../../../runtime/devices/edge/hub-config.ts";

describe("the hub's per-edge users", () => {
  it("grants an edge its own subjects, the device subjects and reply subjects, nothing of the cloud's JetStream API", () => {
    const { publish, subscribe } = hubEdgePermissions("plant-a");
    expect(publish).toEqual([
      "doppel.edge-source.plant-a",
      "doppel.edge-source.plant-a.>",
      "doppel.edge.plant-a.>",
      "doppel.dev.*.*.sync",
      "doppel.dev.*.*.cmd-result",
      "_INBOX.>",
      "$JSC.R.>",
    ]);
    expect(subscribe).toEqual([
      "$JS.plant-a.API.>",
      "$JS.FC.DOPPEL_EDGE.DOPPEL_CLOUD_SOURCE.*",
      "$JS.FC.DOPPEL_EDGE_LOG.DOPPEL_CLOUD_SOURCE.*",
      "doppel.edge.plant-a.>",
      "doppel.dev.*.*.desired",
      "doppel.dev.*.*.cmd",
      "doppel.dev.*.*.errors",
      "_INBOX.doppel.*.*.>",
    ]);
    for (const subject of [...publish, ...subscribe]) {
      expect(subject.startsWith("$JS.cloud.") || subject.startsWith("$JS.API")).toBe(false);
      expect(subject === ">" || subject.startsWith("doppel.edge-log")).toBe(false);
    }
    // The edge node's inbox is inside what the hub delivers to it.
    expect(`${edgeInboxPrefix("plant-a")}.x`.startsWith("doppel.edge.plant-a.")).toBe(true);
  });

  it("writes LEAFNODE-only users with those permissions, refusing bad names and duplicate users", () => {
    const [line] = hubEdgeUsers([{ edge: "plant-a", user: "plant-a", password: 'p"w' }]);
    expect(line).toMatch(
      /^\{ user: "plant-a", password: "p\\"w", allowed_connection_types: \["LEAFNODE"\], /,
    );
    expect(line).toContain('subscribe: { allow: ["$JS.plant-a.API.>", ');
    expect(() => hubEdgePermissions("plant.a")).toThrow(/edge name "plant.a"/);
    expect(() =>
      hubEdgeUsers([
        { edge: "a", user: "u", password: "x" },
        { edge: "b", user: "u", password: "y" },
      ]),
    ).toThrow(/given to two edges/);
    expect(() => hubEdgeUsers([{ edge: "a", user: "u", password: "" }])).toThrow(/empty password/);
    const block = hubAuthorizationConfig(
      [{ edge: "b", user: "b", password: "y" }],
      ['{ user: "cloud", password: "c" }'],
    );
    expect(block).toContain(
      'authorization {\n  users: [\n    { user: "cloud", password: "c" }\n    { user: "b",',
    );
  });
});
