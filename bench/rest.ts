/**
 * REST bench: `GET /v1/twins/{type}/{id}` and `POST .../commands/setTarget` on a Doppel node's
 * HTTP listener, beside the same calls over its gRPC gateway (DoppelClient), and beside a bare
 * Fastify server (same Fastify version) whose handlers answer the same paths with the same bytes
 * from memory (the REST answers Doppel gave, captured once). The servers run in one child process
 * (one event loop, like a node); the client runs here, one loop for every side (CONCURRENCY calls
 * in flight, each awaiting its parsed answer), rounds interleaved (the sides' order rotates each
 * round) so load drift hits all alike. Doppel's side does what a call costs in a node: admission,
 * validation, the API (a read of the resident twin; for invoke, the command, its event persisted
 * to the memory store, the view), the JSON or proto mapping.
 *
 *   npm run bench:rest        (BENCH_QUICK=1 for a short run)
 */
import { fileURLToPath } from "node:url";
import { Pool } from "undici";
import { DoppelClient } from "../runtime/grpc/client.ts";
import { closedLoop, type LoopRound, loadAverage, note, report, startServerProcess, summary } from "./lib.ts";

const quick = process.env["BENCH_QUICK"] === "1";
const ROUNDS = quick ? 2 : 5;
const CALLS = quick ? 2_000 : 8_000;
const CONCURRENCY = 32;
const TWINS = 200;
const id = (n: number) => `t${n % TWINS}`;
const celsius = (n: number) => 10 + (n % 20);

// ---- the servers (child process) ----

async function serve(): Promise<void> {
  const { DoppelNode } = await import("../runtime/node/node.ts");
  const { Thermostat } = await import("../twins/thermostat.ts");
  const { default: Fastify } = await import("fastify");
  const node = await DoppelNode.start(
    {
      nodeId: "bench-rest",
      store: { kind: "memory" },
      grpc: { listen: "127.0.0.1:0" },
      http: { listen: "127.0.0.1:0" },
      log: { level: "silent" },
    },
    { twins: [Thermostat] },
  );
  for (let i = 0; i < TWINS; i++)
    await node.twins.report({ type: "thermostat", id: id(i) }, { temperature: 15 + (i % 10) });
  // Doppel's REST answers, captured once: the bare server sends these bytes.
  const url = node.httpUrl as string;
  const twins = new Map<string, string>();
  for (let i = 0; i < TWINS; i++)
    twins.set(id(i), await (await fetch(`${url}/v1/twins/thermostat/${id(i)}`)).text());
  const invoked = await (
    await fetch(`${url}/v1/twins/thermostat/${id(0)}/commands/setTarget`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ celsius: 20 }),
    })
  ).text();
  const bare = Fastify({ logger: false });
  bare.get<{ Params: { id: string } }>("/v1/twins/thermostat/:id", async (request, reply) => {
    const body = twins.get(request.params.id);
    if (body === undefined) return reply.code(404).send();
    return reply.type("application/json").send(body);
  });
  bare.post("/v1/twins/thermostat/:id/commands/setTarget", async (_request, reply) =>
    reply.type("application/json").send(invoked),
  );
  await bare.listen({ host: "127.0.0.1", port: 0 });
  const address = bare.server.address();
  const barePort = typeof address === "object" && address ? address.port : 0;
  process.stdout.write(
    `READY ${JSON.stringify({ rest: url, grpc: node.grpcAddress, bare: `http://127.0.0.1:${barePort}` })}\n`,
  );
}

// ---- the client (this process) ----

function startServers() {
  return startServerProcess<{ rest: string; grpc: string; bare: string }>(fileURLToPath(import.meta.url));
}

/** One call of the n-th iteration; resolves with the parsed answer. */
type Call = (n: number) => Promise<unknown>;

function httpCalls(pool: Pool): { get: Call; invoke: Call } {
  const send = async (method: "GET" | "POST", path: string, body?: string) => {
    const answer = await pool.request({
      method,
      path,
      ...(body === undefined ? {} : { body, headers: { "content-type": "application/json" } }),
    });
    if (answer.statusCode !== 200) throw new Error(`${method} ${path}: ${answer.statusCode}`);
    return answer.body.json();
  };
  return {
    get: (n) => send("GET", `/v1/twins/thermostat/${id(n)}`),
    invoke: (n) =>
      send(
        "POST",
        `/v1/twins/thermostat/${id(n)}/commands/setTarget`,
        JSON.stringify({ celsius: celsius(n) }),
      ),
  };
}

/** The same loop for every side: CONCURRENCY workers, each awaiting its call. */
const round = (call: Call, calls: number): Promise<LoopRound> => closedLoop(call, calls, CONCURRENCY);

const SIDES = ["rest", "grpc", "bare"] as const;
type Side = (typeof SIDES)[number];
const ratio = (a: number, b: number) => Math.round((a / b) * 1000) / 1000;

async function main(): Promise<void> {
  const servers = await startServers();
  const restPool = new Pool(servers.rest, { connections: CONCURRENCY });
  const barePool = new Pool(servers.bare, { connections: CONCURRENCY });
  const client = new DoppelClient(servers.grpc);
  const rest = httpCalls(restPool);
  const bare = httpCalls(barePool);
  const calls: Record<"get" | "invoke", Record<Side, Call>> = {
    get: { rest: rest.get, bare: bare.get, grpc: (n) => client.getTwin({ type: "thermostat", id: id(n) }) },
    invoke: {
      rest: rest.invoke,
      bare: bare.invoke,
      grpc: (n) => client.invoke({ type: "thermostat", id: id(n) }, "setTarget", { celsius: celsius(n) }),
    },
  };
  try {
    const results: Record<string, unknown> = {};
    for (const op of ["get", "invoke"] as const) {
      note(`${op}: warm-up; then ${ROUNDS} rounds of ${CALLS} calls per side, ${CONCURRENCY} in flight`);
      for (const side of SIDES) await round(calls[op][side], CALLS / 4);
      const rounds: Record<Side, LoopRound>[] = [];
      for (let r = 0; r < ROUNDS; r++) {
        // The order rotates each round: no side always runs first or last.
        const order = SIDES.map((_, i) => SIDES[(i + r) % SIDES.length] as Side);
        const result = {} as Record<Side, LoopRound>;
        for (const side of order) result[side] = await round(calls[op][side], CALLS);
        rounds.push(result);
        note(
          `${op} round ${r + 1}: ${SIDES.map((s) => `${s} ${result[s].callsPerSecond}/s p99 ${result[s].p99} ms`).join(", ")}`,
        );
      }
      const side = (name: Side) => ({
        callsPerSecond: summary(rounds.map((x) => x[name].callsPerSecond)),
        p50: summary(rounds.map((x) => x[name].p50)),
        p99: summary(rounds.map((x) => x[name].p99)),
      });
      const perRound = (a: Side, b: Side) =>
        rounds.map((x) => ratio(x[a].callsPerSecond, x[b].callsPerSecond));
      results[op] = {
        rest: side("rest"),
        grpc: side("grpc"),
        bare: side("bare"),
        ratios: {
          restVsBare: summary(perRound("rest", "bare")),
          restVsGrpc: summary(perRound("rest", "grpc")),
          grpcVsBare: summary(perRound("grpc", "bare")),
        },
      };
    }
    report("rest", {
      command: `${quick ? "BENCH_QUICK=1 " : ""}npm run bench:rest`,
      rounds: ROUNDS,
      callsPerRound: CALLS,
      concurrency: CONCURRENCY,
      loadAverage: loadAverage(),
      ...results,
    });
  } finally {
    client.close();
    await restPool.close();
    await barePool.close();
    servers.child.kill("SIGTERM");
  }
}

if (process.argv[2] === "serve") await serve();
else {
  await main();
  process.exit(0);
}
