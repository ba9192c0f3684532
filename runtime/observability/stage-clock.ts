/**
 * Stage timestamps of one twin's device reports, for the latency breakdown of `bench:ingest`
 * (`BENCH_STAGES=1`): with `DOPPEL_STAGE_CLOCK=<twin id>` in a process's environment, the ingress
 * consumer and the group committer write `STAGE <stage> <epoch ms> [<commits in the store call>]`
 * lines on stderr for that twin's reports (epoch ms with µs digits, comparable across the
 * processes of one machine). Unset (the default), a stamp costs one comparison.
 */
const WATCHED = process.env["DOPPEL_STAGE_CLOCK"] || undefined;

/** The stages a report passes through, in order (`puback` and `visible` are the bench's own). */
export type Stage = "delivered" | "process" | "commit-start" | "commit-done" | "ack";

/** Stamps `stage` when `key` (a subject or a twin id) names the watched twin. */
export function stageClock(stage: Stage, key: string, commits?: number): void {
  if (WATCHED === undefined || !key.includes(WATCHED)) return;
  const at = (performance.timeOrigin + performance.now()).toFixed(3);
  process.stderr.write(`STAGE ${stage} ${at}${commits === undefined ? "" : ` ${commits}`}\n`);
}
