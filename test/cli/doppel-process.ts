/**
 * Runs the `doppel` command as its own process, as a user would: one-shot commands, and nodes
 * (`doppel start`) awaited until they serve. Nothing here waits on a clock: processes are awaited
 * until they exit or print what is expected.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { join } from "node:path";

export const BIN = join(import.meta.dirname, "../../bin/doppel.js");

/** This process's environment without DOPPEL_* (the CLI reads those: the test's servers are not the node's). */
export const ENV = Object.fromEntries(
  Object.entries(process.env).filter(([name]) => !name.startsWith("DOPPEL_")),
);

export interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * No test here waits on a clock: processes are awaited until they exit or print what is expected,
 * under this outer bound, generous for a loaded machine (each `doppel` process starts Node anew).
 */
export const PATIENCE = 300_000;

/** Runs `doppel ARGS` to completion, as its own process. */
export function doppel(args: readonly string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { env: { ...ENV, ...env } }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === "number" ? error.code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/** Starts `doppel start` and resolves with the process and its gRPC address once it is serving. */
export function startNode(
  args: readonly string[],
): Promise<{ child: ChildProcess; address: string; output: () => string }> {
  const child = spawn(
    process.execPath,
    [BIN, "start", "--listen", "127.0.0.1:0", "--log-level", "warn", ...args],
    { stdio: ["ignore", "pipe", "pipe"], env: ENV },
  );
  let output = "";
  return new Promise((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      const match = /gRPC\s+(127\.0\.0\.1:\d+)/.exec(output);
      if (match && output.includes("Stop with Ctrl-C"))
        resolve({ child, address: match[1]!, output: () => output });
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.on("exit", (code) => reject(new Error(`node exited with ${code}: ${output}`)));
  });
}

export function stopNode(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => {
    child.once("exit", (code) => resolve(code));
    child.kill("SIGTERM");
  });
}
