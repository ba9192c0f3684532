/**
 * A nats-server of the test's own (`.infra/bin/nats-server`, built by `scripts/infra/nats.sh`) on
 * free loopback ports with JetStream file storage in a directory of its own, so a test can
 * `kill -9` it and start it again on the same port and storage without touching the shared test
 * server.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { connect } from "node:net";
import { join } from "node:path";
import { freePort } from "../../../runtime/testing/free-port.ts";

const BINARY = join(process.cwd(), ".infra/bin/nats-server");

export interface OwnNats {
  readonly url: string;
  /** `kill -9` of the server; resolves once it exited. */
  kill(): Promise<void>;
  /** Starts it again on the same port and storage; resolves once it accepts connections. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

/** Whether something accepts TCP connections on the loopback `port`. */
export function accepting(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

/** Starts a nats-server with JetStream storing in `storeDir`. */
export async function startOwnNats(storeDir: string): Promise<OwnNats> {
  const port = await freePort();
  let child: ChildProcess | undefined;
  const launch = async () => {
    const started = spawn(
      BINARY,
      ["-a", "127.0.0.1", "-p", String(port), "-js", "-sd", storeDir, "--server_name", `chaos-${port}`],
      { stdio: "ignore" },
    );
    child = started;
    let exited = false;
    started.once("exit", () => {
      exited = true;
    });
    const until = Date.now() + 60_000;
    while (!(await accepting(port))) {
      if (exited) throw new Error("nats-server exited while starting");
      if (Date.now() > until) throw new Error("nats-server did not start within 60 s");
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  };
  const kill = () =>
    new Promise<void>((resolve) => {
      const running = child;
      if (!running || running.exitCode !== null || running.signalCode !== null) return resolve();
      running.once("exit", () => resolve());
      running.kill("SIGKILL");
    });
  await launch();
  return { url: `nats://127.0.0.1:${port}`, kill, restart: launch, stop: kill };
}
