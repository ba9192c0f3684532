/**
 * gRPC auth and TLS bench: GetTwin calls per second and latency through one node's gateway,
 * four ways in the same run, interleaved round by round, the order rotating (A B C D, B C D A,
 * ...) so load drift and going first hit them alike; per-round ratios to the same round's plain
 * side and the load average per round are reported beside the medians:
 *   plain       plaintext, no security (the loopback default)
 *   key         plaintext, API key checked on every call (SHA-256 + constant-time compare)
 *   tls+key     TLS, API key
 *   mtls        TLS with a client certificate mapped to a principal (no key)
 * The client runs in the same process (one shared machine), so figures are relative.
 *
 *   npm run bench:grpc-auth       (BENCH_QUICK=1 for a short run)
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SystemClock } from "../runtime/core/clock.ts";
import { DoppelClient, type DoppelClientOptions } from "../runtime/grpc/client.ts";
import { type Gateway, type GatewayOptions, startGateway } from "../runtime/grpc/server.ts";
import { DoppelNode } from "../runtime/node/node.ts";
import { silentLogger } from "../runtime/observability/logger.ts";
import { ApiKeys, createKey } from "../runtime/security/api-keys.ts";
import { RateLimiter } from "../runtime/security/rate-limiter.ts";
import { makeCertificates } from "../test/security/certificates.ts";
import { Thermostat } from "../twins/thermostat.ts";
import { histogram, loadAverage, median, note, percentiles, report, summary } from "./lib.ts";

const quick = process.env["BENCH_QUICK"] === "1";
const ROUNDS = quick ? 2 : 5;
const CALLS = quick ? 2_000 : 6_000;
const CONCURRENCY = 32;

interface Variant {
  readonly name: string;
  readonly gateway: Partial<GatewayOptions>;
  readonly client: DoppelClientOptions;
}

async function main(): Promise<void> {
  const certs = makeCertificates();
  const dir = mkdtempSync(join(tmpdir(), "doppel-bench-auth-"));
  const keysFile = join(dir, "keys.json");
  const { key } = createKey(keysFile, { scopes: ["read"] });
  const node = await DoppelNode.start(
    { nodeId: "bench", store: { kind: "memory" }, grpc: { listen: false }, log: { level: "silent" } },
    { twins: [Thermostat] },
  );
  const ref = { type: "thermostat", id: "bench-1" };
  await node.twins.report(ref, { temperature: 20 });
  const security = () => ({
    keys: new ApiKeys(keysFile, SystemClock),
    limiter: new RateLimiter(SystemClock),
  });
  const serverTls = { cert: certs.read(certs.server.cert), key: certs.read(certs.server.key) };
  const client = certs.client("bench");
  const variants: Variant[] = [
    { name: "plain", gateway: {}, client: {} },
    { name: "key", gateway: { security: security() }, client: { token: key } },
    {
      name: "tls+key",
      gateway: { security: security(), tls: serverTls },
      client: { token: key, ca: certs.read(certs.ca) },
    },
    {
      name: "mtls",
      gateway: {
        security: { certificateRules: [{ commonName: "bench", scopes: ["read"] }] },
        tls: { ...serverTls, clientCa: certs.read(certs.ca) },
      },
      client: { ca: certs.read(certs.ca), cert: certs.read(client.cert), key: certs.read(client.key) },
    },
  ];
  const gateways: Gateway[] = [];
  const clients: DoppelClient[] = [];
  for (const variant of variants) {
    const gateway = await startGateway({
      api: node.twins,
      types: () => [],
      listen: "127.0.0.1:0",
      maxMessageBytes: 4 * 1024 * 1024,
      logger: silentLogger(),
      ...variant.gateway,
    });
    gateways.push(gateway);
    clients.push(new DoppelClient(gateway.address, variant.client));
  }
  const hist = variants.map(() => histogram());
  const rates: number[][] = variants.map(() => []);

  async function run(index: number, calls: number): Promise<number> {
    const c = clients[index] as DoppelClient;
    let next = 0;
    const started = performance.now();
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (next++ < calls) {
          const t0 = performance.now();
          await c.getTwin(ref);
          hist[index]?.recordValue(Math.max(1, Math.round((performance.now() - t0) * 1000)));
        }
      }),
    );
    return calls / ((performance.now() - started) / 1000);
  }

  for (let i = 0; i < variants.length; i++) await run(i, 500); // warm up connections and JIT
  for (const h of hist) h.reset();
  const loads: string[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    for (let k = 0; k < variants.length; k++) {
      const i = (round + k) % variants.length;
      const rate = await run(i, CALLS);
      rates[i]?.push(rate);
      note(`round ${round + 1} ${variants[i]?.name}: ${Math.round(rate)} GetTwin/s`);
    }
    loads.push(loadAverage());
  }
  const plainRates = rates[0] ?? [];
  const round2 = (x: number) => Math.round(x * 100) / 100;
  const results = Object.fromEntries(
    variants.map((variant, i) => {
      const p = percentiles(hist[i] as ReturnType<typeof histogram>);
      const own = rates[i] ?? [];
      return [
        variant.name,
        {
          callsPerSecond: summary(own.map(Math.round)),
          vsPlain: round2(median(own) / median(plainRates)),
          vsPlainByRound: own.map((rate, r) => round2(rate / (plainRates[r] ?? rate))),
          p50Ms: p.p50,
          p99Ms: p.p99,
        },
      ];
    }),
  );
  for (const c of clients) c.close();
  for (const g of gateways) await g.stop();
  await node.stop();
  certs.remove();
  rmSync(dir, { recursive: true, force: true });
  report("grpc-auth", {
    command: quick ? "BENCH_QUICK=1 npm run bench:grpc-auth" : "npm run bench:grpc-auth",
    rounds: ROUNDS,
    callsPerRound: CALLS,
    concurrency: CONCURRENCY,
    loadAverages: loads,
    results,
  });
}

await main();
