/**
 * Measures how evenly the ring spreads S = 256 shards, for the bound stated in
 * `cluster/ring/hash-ring.ts` and docs/cluster.md. Not a test: run it by hand.
 *
 *   npx tsx test/cluster/measure-ring-balance.ts [member sets per N = 2000] [V = 128]
 *
 * For N = 1..12 random member sets, prints the busiest node's share as a multiple of S/N
 * (worst, p99.9, p99, median) and the shards a join moves as a multiple of S/(N+1) (min, max).
 */

import { randomUUID } from "node:crypto";
import { HashRing } from "../../cluster/ring/hash-ring.ts";

const S = 256;
const sets = Number(process.argv[2] ?? 2000);
const virtualNodes = Number(process.argv[3] ?? 128);

const quantile = (sorted: readonly number[], q: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
const fmt = (n: number) => n.toFixed(2);

console.log(`S=${S} V=${virtualNodes}, ${sets} member sets per N`);
console.log("N   worst  p99.9  p99    median  join-min join-max");
for (let n = 1; n <= 12; n++) {
  const busiest: number[] = [];
  const joins: number[] = [];
  for (let i = 0; i < sets; i++) {
    const ids = Array.from({ length: n }, () => randomUUID());
    const before = new HashRing(ids, { virtualNodes }).assignment(S);
    const counts = new Map<string, number>();
    for (const owner of before) counts.set(owner, (counts.get(owner) ?? 0) + 1);
    busiest.push(Math.max(...counts.values()) / (S / n));
    const after = new HashRing([...ids, randomUUID()], { virtualNodes }).assignment(S);
    joins.push(after.filter((owner, shard) => owner !== before[shard]).length / (S / (n + 1)));
  }
  busiest.sort((a, b) => a - b);
  joins.sort((a, b) => a - b);
  console.log(
    [
      String(n).padEnd(3),
      fmt(busiest.at(-1)!).padEnd(6),
      fmt(quantile(busiest, 0.999)).padEnd(6),
      fmt(quantile(busiest, 0.99)).padEnd(6),
      fmt(quantile(busiest, 0.5)).padEnd(7),
      fmt(joins[0]!).padEnd(8),
      fmt(joins.at(-1)!),
    ].join(" "),
  );
}
