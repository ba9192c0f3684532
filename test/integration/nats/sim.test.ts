import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type NatsNode, natsUrl, resetStream, startNatsNode } from "./harness.ts";

const DOPPEL = fileURLToPath(new URL("../../../bin/doppel.js", import.meta.url));

describe("doppel sim", () => {
  let n: NatsNode;
  beforeAll(async () => {
    await resetStream();
    n = await startNatsNode();
  });
  afterAll(async () => {
    await n?.stop();
    await resetStream();
  });

  it("runs a fleet of simulated devices against a node over NATS and prints progress and totals", async () => {
    const child = spawn(
      process.execPath,
      [
        DOPPEL,
        "sim",
        "--server",
        natsUrl(),
        "--type",
        "thermostat",
        "--devices",
        "5",
        "--rate",
        "5",
        "--duration",
        "2s",
        "--json",
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
    expect(stderr).toBe("");
    expect(code).toBe(0);
    const lines = stdout.trim().split("\n");
    expect(lines[0]).toContain("5 thermostat devices");
    expect(lines.some((line) => /devices 5\/5 connected · reports \d+\/s/.test(line))).toBe(true);
    const summary = JSON.parse(lines.at(-1)!) as Record<string, number>;
    expect(summary).toMatchObject({ devices: 5, connected: 5, errors: 0 });
    expect(summary["acked"]).toBeGreaterThan(20);
    const page = await n.node.twins.query("thermostat", { where: 'id == "sim-thermostat-001"' });
    expect(page.views[0]?.version).toBeGreaterThan(0);
  }, 30_000);
});
