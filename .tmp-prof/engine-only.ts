import { DoppelNode } from "../runtime/node/node.ts";
import { silentLogger } from "../runtime/observability/logger.ts";
import { MemoryEventStore } from "../runtime/persistence/memory-store.ts";
import { Thermostat } from "../twins/thermostat.ts";

const twins = Number(process.argv[2] ?? 1000),
  total = Number(process.argv[3] ?? 100000),
  rounds = Number(process.argv[4] ?? 3);
for (let r = 0; r < rounds; r++) {
  const node = await DoppelNode.start(
    {
      nodeId: "bench",
      store: { kind: "memory" },
      grpc: { listen: false },
      limits: { maxResident: twins * 2, idleTimeout: "1h", snapshotEvery: 1000, mailboxSize: 10_000 },
    },
    { twins: [Thermostat], store: new MemoryEventStore(), logger: silentLogger() },
  );
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: 512 }, async () => {
      while (next < total) {
        const i = next++;
        await node.twins.report(
          { type: "thermostat", id: `t${i % twins}` },
          { temperature: 15 + (Math.floor(i / twins) % 20) },
        );
      }
    }),
  );
  console.log(Math.round(total / ((performance.now() - t0) / 1000)), "turns/s");
  await node.stop();
}
