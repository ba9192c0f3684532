import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { main } from "../../runtime/cli/main.ts";
import { BIN, doppel, PATIENCE, type Run, startNode, stopNode } from "./doppel-process.ts";

/** Runs the CLI's `main` with ARGS in this process: the same commands and output, without a process start. */
async function inProcess(args: readonly string[]): Promise<Run> {
  let stdout = "";
  let stderr = "";
  const code = await main(args, {
    out: (line) => {
      stdout += `${line}\n`;
    },
    err: (text) => {
      stderr += text;
    },
  });
  return { code, stdout, stderr };
}

describe("doppel CLI against a running node", { timeout: PATIENCE }, () => {
  let node: Awaited<ReturnType<typeof startNode>>;
  let dataDir: string;
  const at = () => ["--server", node.address];

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), "doppel-cli-"));
    node = await startNode(["--data", dataDir, "--no-demo"]);
  }, PATIENCE);

  afterAll(async () => {
    if (node && node.child.exitCode === null) await stopNode(node.child);
    rmSync(dataDir, { recursive: true, force: true });
  });

  it("lists the example twin types", async () => {
    const run = await doppel(["types", ...at()]);
    expect(run.code).toBe(0);
    expect(run.stdout).toContain("thermostat  acknowledgeAlarm, boost, setMode, setTarget");
  });

  it("reports, invokes and reads a twin, in text and in JSON", async () => {
    expect(
      (await doppel(["report", "thermostat/cli-1", '{"temperature": 18, "heating": false}', ...at()])).code,
    ).toBe(0);
    const invoked = await doppel([
      "invoke",
      "thermostat/cli-1",
      "setTarget",
      '{"celsius": 22}',
      "--json",
      ...at(),
    ]);
    expect(invoked.code).toBe(0);
    expect(JSON.parse(invoked.stdout)).toMatchObject({ result: { setPoint: 22, heating: true } });
    const got = await doppel(["get", "thermostat/cli-1", "--json", ...at()]);
    const view = JSON.parse(got.stdout);
    expect(view).toMatchObject({
      type: "thermostat",
      id: "cli-1",
      reported: { temperature: 18 },
      desired: { heating: true },
    });
    // Times as RFC 3339, as gRPC's Timestamp in JSON.
    const RFC3339 = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;
    expect(view.createdAt).toMatch(RFC3339);
    expect(view.updatedAt).toMatch(RFC3339);
    expect(Date.parse(view.updatedAt)).toBeGreaterThanOrEqual(Date.parse(view.createdAt));
    const text = await doppel(["get", "thermostat/cli-1", ...at()]);
    expect(text.stdout).toContain(`thermostat/cli-1  version ${view.version}`);
  });

  it("changes desired state with a version check", async () => {
    const view = JSON.parse((await doppel(["get", "thermostat/cli-1", "--json", ...at()])).stdout);
    const stale = await doppel([
      "desire",
      "thermostat/cli-1",
      '{"heating": false}',
      "--if-version",
      "1",
      ...at(),
    ]);
    expect(stale.code).toBe(1);
    expect(stale.stderr.trim()).toBe(
      `doppel: VERSION_CONFLICT: thermostat/cli-1: expected version 1, but it is at ${view.version}`,
    );
    const ok = await doppel([
      "desire",
      "thermostat/cli-1",
      '{"heating": false}',
      "--if-version",
      String(view.version),
      "--json",
      ...at(),
    ]);
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.stdout).version).toBe(view.version + 1);
  });

  it("queries with a filter", async () => {
    await doppel(["report", "thermostat/cli-2", '{"temperature": 30}', ...at()]);
    const run = await doppel([
      "query",
      "thermostat",
      "--where",
      "reported.temperature >= 25",
      "--json",
      ...at(),
    ]);
    expect(run.code).toBe(0);
    expect(JSON.parse(run.stdout).twins.map((t: { id: string }) => t.id)).toEqual(["cli-2"]);
  });

  it("prints history one JSON object per line", async () => {
    const run = await doppel(["history", "thermostat/cli-1", "--json", ...at()]);
    const events = run.stdout
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line));
    expect(events[0]).toMatchObject({ seq: 1, type: "$reported" });
    expect(events[0].at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    expect(events.map((e: { seq: number }) => e.seq)).toEqual(events.map((_: unknown, i: number) => i + 1));
  });

  it("streams the current state, then changes, with watch", async () => {
    await doppel(["report", "thermostat/cli-watch", '{"temperature": 20}', ...at()]);
    const watcher = spawn(process.execPath, [BIN, "watch", "thermostat/cli-watch", "--json", ...at()]);
    const lines: string[] = [];
    let waiting: { count: number; resolve: () => void } | undefined;
    let buffer = "";
    watcher.stdout.on("data", (chunk: Buffer) => {
      buffer += chunk.toString();
      const parts = buffer.split("\n");
      buffer = parts.pop() ?? "";
      lines.push(...parts.filter((line) => line.length > 0));
      if (waiting && lines.length >= waiting.count) waiting.resolve();
    });
    const linesAtLeast = (count: number) =>
      new Promise<void>((resolve) => {
        if (lines.length >= count) resolve();
        else waiting = { count, resolve };
      });
    // The current state comes first, and only once the server is subscribed: then a change must follow.
    await linesAtLeast(1);
    const current = JSON.parse(lines[0]!);
    expect(current.events).toEqual([]);
    await doppel(["report", "thermostat/cli-watch", '{"temperature": 12.5}', ...at()]);
    await linesAtLeast(2);
    watcher.kill("SIGINT");
    const change = JSON.parse(lines[1]!);
    expect(change.events[0]).toMatchObject({ type: "$reported", data: { patch: { temperature: 12.5 } } });
    expect(change.twin.version).toBeGreaterThan(current.twin.version);
  });

  it("fails with one line and a non-zero exit on bad input", async () => {
    const cases: [string[], string][] = [
      [["get", "thermostat/a.b"], "doppel: INVALID_ARGUMENT: invalid twin id \"a.b\": '.' at position 2"],
      [["get", "toaster/t1"], "doppel: NOT_FOUND: unknown twin type 'toaster'"],
      [
        ["invoke", "thermostat/x", "explode"],
        "doppel: NOT_FOUND: twin type 'thermostat' has no command 'explode'",
      ],
      [
        ["invoke", "thermostat/x", "setTarget", '{"celsius": 99}'],
        "doppel: INVALID_ARGUMENT: invalid arguments",
      ],
      [
        ["invoke", "thermostat/x", "setTarget", "{oops"],
        "doppel: INVALID_ARGUMENT: JSON_ARGS is not valid JSON",
      ],
      [["query", "thermostat", "--where", "reported.x >"], "doppel: INVALID_ARGUMENT: filter: at column 13"],
      [["get", "thermostat/nobody"], "doppel: NOT_FOUND: twin thermostat/nobody not found"],
    ];
    // Each case through the CLI's main in this process (the node is still a process of its own)...
    for (const [args, message] of cases) {
      const run = await inProcess([...args, ...at()]);
      expect(run.code, args.join(" ")).toBe(1);
      expect(run.stderr.trim().split("\n")).toHaveLength(1);
      expect(run.stderr).toContain(message);
      expect(run.stdout).toBe("");
    }
    // ...and one as a real process: the line reaches stderr and the exit code is the process's.
    const [args, message] = cases[0]!;
    const run = await doppel([...args, ...at()]);
    expect(run.code).toBe(1);
    expect(run.stderr.trim().split("\n")).toHaveLength(1);
    expect(run.stderr).toContain(message);
    expect((await inProcess(["types", ...at()])).code).toBe(0);
  });

  it("exits with 2 on usage errors", async () => {
    const run = await inProcess(["invoke"]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain("missing required argument");
    const real = await doppel(["invoke"]);
    expect(real.code).toBe(2);
    expect(real.stderr).toContain("missing required argument");
  });

  it("says clearly when no node is reachable", async () => {
    const run = await doppel(["get", "thermostat/t1", "--server", "127.0.0.1:1", "--timeout", "2s"]);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(
      /^doppel: (UNAVAILABLE: cannot reach a Doppel node at 127.0.0.1:1|DEADLINE_EXCEEDED: )/,
    );
  });

  it("keeps twins across a restart of the node on the embedded store", async () => {
    const before = JSON.parse((await doppel(["get", "thermostat/cli-1", "--json", ...at()])).stdout);
    expect(await stopNode(node.child)).toBe(0);
    expect(node.output()).toContain("SIGTERM: stopping");
    node = await startNode(["--data", dataDir, "--no-demo"]);
    const after = JSON.parse((await doppel(["get", "thermostat/cli-1", "--json", ...at()])).stdout);
    expect(after).toEqual(before);
  });
});

describe("doppel start configuration", { timeout: PATIENCE }, () => {
  it("refuses an invalid config file naming the field", async () => {
    const dir = mkdtempSync(join(tmpdir(), "doppel-cfg-"));
    const file = join(dir, "doppel.json");
    writeFileSync(file, JSON.stringify({ limits: { mailboxSize: -1 }, colour: "blue" }));
    const run = await doppel(["start", "--config", file, "--listen", "127.0.0.1:0"]);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain("doppel: INVALID_ARGUMENT: config");
    expect(run.stderr).toContain("colour");
    rmSync(dir, { recursive: true, force: true });
  });

  it("refuses a missing twin module", async () => {
    const run = await doppel([
      "start",
      "--twins",
      "./no-such-twins.ts",
      "--listen",
      "127.0.0.1:0",
      "--store",
      "memory",
    ]);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain("twin module ./no-such-twins.ts does not exist");
  });
});
