/**
 * gRPC read bench: `GetTwin` through a Doppel node's gateway vs a bare grpc-js server that
 * answers the same method with the same message from memory (the response Doppel gave for that
 * twin, captured once), both loaded from the same proto with the same loader options, so the
 * bytes on the wire are the same. The servers run in one child process (one event loop, like a
 * node); the client runs in this process with the same raw generated client for both, CONCURRENCY
 * calls in flight over one channel, rounds interleaved A B A B so load drift hits both alike.
 * Doppel's side does what a read costs in a node: admission, the API (validation, routing to the
 * local owner, the resident twin's view) and the proto mapping.
 *
 *   npm run bench:grpc-read        (BENCH_QUICK=1 for a short run)
 */
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import type { TwinServiceClient } from "../runtime/grpc/generated/doppel/v1/TwinService.ts";
import { loadContract } from "../runtime/grpc/proto.ts";
import { closedLoop, type LoopRound, median, note, report, startServerProcess } from "./lib.ts";

const quick = process.env["BENCH_QUICK"] === "1";
const ROUNDS = quick ? 2 : 6;
const CALLS = quick ? 4_000 : 20_000;
const CONCURRENCY = 50;
const TWINS = 1_000;

// ---- the servers (child process) ----

async function serve(): Promise<void> {
  const { DoppelNode } = await import("../runtime/node/node.ts");
  const { Thermostat } = await import("../twins/thermostat.ts");
  const node = await DoppelNode.start(
    {
      nodeId: "bench-read",
      store: { kind: "memory" },
      grpc: { listen: "127.0.0.1:0" },
      log: { level: "silent" },
    },
    { twins: [Thermostat] },
  );
  for (let i = 0; i < TWINS; i++)
    await node.twins.report({ type: "thermostat", id: `t${i}` }, { temperature: 15 + (i % 10) });
  const contract = loadContract();
  // Doppel's answers, captured once through its own gateway: the bare server sends these.
  const doppel = new contract.Client(node.grpcAddress as string, grpc.credentials.createInsecure());
  const answers = new Map<string, unknown>();
  for (let i = 0; i < TWINS; i++) {
    const id = `t${i}`;
    answers.set(
      id,
      await new Promise((resolve, reject) =>
        doppel.getTwin({ type: "thermostat", id }, (error, twin) => (error ? reject(error) : resolve(twin))),
      ),
    );
  }
  doppel.close();
  const bare = new grpc.Server();
  bare.addService(contract.service as unknown as grpc.ServiceDefinition, {
    GetTwin: (
      call: grpc.ServerUnaryCall<{ type: string; id: string }, unknown>,
      callback: grpc.sendUnaryData<unknown>,
    ) => {
      const answer = answers.get(call.request.id);
      if (answer === undefined) callback({ code: grpc.status.NOT_FOUND, details: "no such twin" });
      else callback(null, answer);
    },
  });
  const barePort = await new Promise<number>((resolve, reject) =>
    bare.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (error, port) =>
      error ? reject(error) : resolve(port),
    ),
  );
  process.stdout.write(
    `READY ${JSON.stringify({ doppel: node.grpcAddress, bare: `127.0.0.1:${barePort}` })}\n`,
  );
}

// ---- the client (this process) ----

function startServers() {
  return startServerProcess<{ doppel: string; bare: string }>(fileURLToPath(import.meta.url));
}

function round(client: TwinServiceClient, calls: number): Promise<LoopRound> {
  return closedLoop(
    (n) =>
      new Promise<void>((resolve, reject) =>
        client.getTwin({ type: "thermostat", id: `t${n % TWINS}` }, (error) =>
          error ? reject(error) : resolve(),
        ),
      ),
    calls,
    CONCURRENCY,
  );
}

const ms = (value: number) => Math.round(value * 1000) / 1000;

async function main(): Promise<void> {
  const servers = await startServers();
  const contract = loadContract();
  const clients = {
    doppel: new contract.Client(servers.doppel, grpc.credentials.createInsecure()),
    bare: new contract.Client(servers.bare, grpc.credentials.createInsecure()),
  };
  try {
    note(`warm-up; then ${ROUNDS} rounds of ${CALLS} GetTwin calls per side, ${CONCURRENCY} in flight`);
    await round(clients.doppel, CALLS / 4);
    await round(clients.bare, CALLS / 4);
    const rounds: { doppel: LoopRound; bare: LoopRound }[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      // A B in one round, B A in the next: neither side always runs second.
      const first = r % 2 === 0 ? "doppel" : "bare";
      const second = first === "doppel" ? "bare" : "doppel";
      const a = await round(clients[first], CALLS);
      const b = await round(clients[second], CALLS);
      const result = first === "doppel" ? { doppel: a, bare: b } : { doppel: b, bare: a };
      rounds.push(result);
      note(
        `round ${r + 1}: doppel ${result.doppel.callsPerSecond}/s (p99 ${result.doppel.p99} ms), bare ${result.bare.callsPerSecond}/s (p99 ${result.bare.p99} ms)`,
      );
    }
    const side = (name: "doppel" | "bare") => {
      const rates = rounds.map((x) => x[name].callsPerSecond);
      return {
        callsPerSecond: median(rates),
        range: [Math.min(...rates), Math.max(...rates)],
        p50: ms(median(rounds.map((x) => x[name].p50))),
        p99: ms(median(rounds.map((x) => x[name].p99))),
      };
    };
    const doppel = side("doppel");
    const bare = side("bare");
    const ratios = rounds.map(
      (x) => Math.round((x.doppel.callsPerSecond / x.bare.callsPerSecond) * 100) / 100,
    );
    report("grpc-read", {
      command: `${quick ? "BENCH_QUICK=1 " : ""}npm run bench:grpc-read`,
      rounds: ROUNDS,
      callsPerRound: CALLS,
      concurrency: CONCURRENCY,
      doppel,
      bare,
      doppelVsBare: Math.round((doppel.callsPerSecond / bare.callsPerSecond) * 1000) / 1000,
      roundRatios: ratios,
    });
  } finally {
    clients.doppel.close();
    clients.bare.close();
    servers.child.kill("SIGTERM");
  }
}

if (process.argv[2] === "serve") await serve();
else {
  await main();
  process.exit(0);
}
