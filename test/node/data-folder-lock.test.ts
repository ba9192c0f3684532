import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { FailedPrecondition } from "../../runtime/core/errors.ts";
import { DoppelNode } from "../../runtime/node/node.ts";
import { lockDataFolder } from "../../runtime/persistence/data-folder-lock.ts";
import { Thermostat } from "../../twins/thermostat.ts";

const BIN = join(import.meta.dirname, "../../bin/doppel.js");
const ENV = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith("DOPPEL_")));
const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function folder(): string {
  const dir = mkdtempSync(join(tmpdir(), "doppel-lock-"));
  dirs.push(dir);
  return dir;
}

/** `doppel start` on `dir`, resolved once it says it is running (no clock involved). */
function startCli(dir: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, [BIN, "start", "--data", dir, "--listen", "off", "--no-demo"], {
    stdio: ["ignore", "pipe", "pipe"],
    env: ENV,
  });
  let output = "";
  return new Promise((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes("Stop with Ctrl-C")) resolve(child);
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", onData);
    child.once("exit", (code) => reject(new Error(`doppel start exited with ${code}: ${output}`)));
  });
}

const exited = (child: ChildProcess) =>
  new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once("exit", () => resolve());
  });

const startNode = (dataDir: string) =>
  DoppelNode.start({ dataDir, grpc: { listen: false } }, { twins: [Thermostat] });

describe("one node per data folder", () => {
  it("refuses a second node on a folder a running node process holds, naming the folder and its pid", async () => {
    const dir = folder();
    const first = await startCli(dir);
    try {
      const refused = await startNode(dir).then(
        () => undefined,
        (error: unknown) => error,
      );
      expect(refused).toBeInstanceOf(FailedPrecondition);
      expect((refused as Error).message).toBe(
        `data folder ${dir} is in use by another Doppel node (pid ${first.pid}): stop it, or give this node another data folder (--data or DOPPEL_DATA_DIR)`,
      );
      // The CLI says so in one line and exits non-zero.
      const second = await new Promise<{ code: number; stderr: string }>((resolve) =>
        execFile(
          process.execPath,
          [BIN, "start", "--data", dir, "--listen", "off", "--no-demo"],
          { env: ENV },
          (error, _stdout, stderr) => resolve({ code: error ? Number(error.code ?? 1) : 0, stderr }),
        ),
      );
      expect(second.code).toBe(1);
      expect(second.stderr.trim()).toBe(
        `doppel: FAILED_PRECONDITION: data folder ${dir} is in use by another Doppel node (pid ${first.pid}): stop it, or give this node another data folder (--data or DOPPEL_DATA_DIR)`,
      );
    } finally {
      first.kill("SIGTERM");
      await exited(first);
    }
  });

  it("is free again at once after its holder was killed with kill -9 (no stale lock)", async () => {
    const dir = folder();
    const first = await startCli(dir);
    expect(() => lockDataFolder(dir)).toThrow(`is in use by another Doppel node (pid ${first.pid})`);
    first.kill("SIGKILL");
    await exited(first);
    expect(first.signalCode).toBe("SIGKILL");
    const node = await startNode(dir);
    await node.stop();
  });

  it("is free again after a node stops, and a node in the same process is refused too", async () => {
    const dir = folder();
    const node = await startNode(dir);
    await expect(startNode(dir)).rejects.toThrow(
      `data folder ${dir} is in use by another Doppel node (pid ${process.pid})`,
    );
    await node.stop();
    const again = lockDataFolder(dir);
    again.release();
    again.release(); // idempotent
    const next = await startNode(dir);
    await next.stop();
  });
});
