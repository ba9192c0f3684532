import { describe, expect, it } from "vitest";
import { hubConfigCommand, parseEdgeUser } from "../../runtime/cli/hub-config-command.ts";

describe("doppel edge hub-config", () => {
  it("prints one leaf-only user per --edge NAME:PASSWORD", () => {
    const lines: string[] = [];
    hubConfigCommand({ edge: ["plant-a:secret:with:colons", "plant-b:pw"] }, (line) => lines.push(line));
    const text = lines.join("\n");
    expect(text).toMatch(/^# The Doppel edges' leaf users/);
    expect(text).toContain(
      '{ user: "plant-a", password: "secret:with:colons", allowed_connection_types: ["LEAFNODE"]',
    );
    expect(text).toContain('"doppel.edge.plant-b.>"');
    expect(text).not.toContain("leafnodes {");
  });

  it("refuses a missing or malformed --edge, naming the flag", () => {
    expect(() => hubConfigCommand({}, () => undefined)).toThrow(/at least one --edge/);
    expect(() => parseEdgeUser("plant-a")).toThrow(/must be NAME:PASSWORD/);
    expect(() => parseEdgeUser(":pw")).toThrow(/must be NAME:PASSWORD/);
    expect(() => parseEdgeUser("plant-a:")).toThrow(/must be NAME:PASSWORD/);
    expect(
      () => parseEdgeUser("plant.a:pw") && hubConfigCommand({ edge: ["plant.a:pw"] }, () => undefined),
    ).toThrow(/edge name "plant.a"/);
  });
});
