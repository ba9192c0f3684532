/**
 * Chaos bench: the fault scenarios of test/integration/chaos run longer, printing for each the
 * reports acknowledged / lost / superseded / duplicated / out of order / quarantined (the test
 * asserts the zeros on a short run; here the figures are the point).
 *
 *   npm run bench:chaos            # BENCH_CRASHES (6) kills of nats-server, BENCH_PHASE (400)
 *                                  # acknowledged reports before and after each, BENCH_DEVICES (20)
 *
 * Needs `.infra/bin/nats-server` (scripts/infra/nats.sh builds it); the scenario runs its own
 * nats-server on a free port. The cost of the conditional (fenced) write is in `bench:store`.
 */
import { runNatsCrashScenario } from "../test/integration/chaos/nats-crash-scenario.ts";
import { note, report } from "./lib.ts";

const crashes = Number(process.env["BENCH_CRASHES"] ?? 6);
const reportsPerPhase = Number(process.env["BENCH_PHASE"] ?? 400);
const devices = Number(process.env["BENCH_DEVICES"] ?? 20);

note(
  `nats-server kill -9 x${crashes}, ${devices} devices, ${reportsPerPhase} acknowledged reports per phase`,
);
const natsCrash = await runNatsCrashScenario({ devices, crashes, reportsPerPhase });
note(JSON.stringify(natsCrash));
report("chaos", { command: "npm run bench:chaos", scenarios: [natsCrash] });
process.exit(0);
