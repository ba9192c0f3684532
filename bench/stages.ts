/**
 * The latency breakdown of `bench:ingest` (`BENCH_STAGES=1`): where a probe report's time goes
 * between its publish and its value being visible in the store, stage by stage, on both sides.
 *
 * The node and the baseline run with `DOPPEL_STAGE_CLOCK=<probe twin id>` and write `STAGE` lines
 * on stderr (`runtime/observability/stage-clock.ts`: delivered by the consumer, processing
 * started, store call started with its commit count, store call done, acked); the bench stamps
 * the publish, its PubAck and the first poll that saw the value. Stamps are epoch milliseconds
 * (`performance.timeOrigin + performance.now()`), comparable between processes of one machine.
 * Probes go one at a time and each passes every stage once: per stage, the probes take that
 * stage's stamps in time order, each the first one not before its publish (a late stamp of one
 * probe, e.g. a commit-done written after the bench saw the value and published the next probe,
 * still goes to its own probe).
 */
import type { ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import { histogram, percentiles } from "./lib.ts";

/** The stages of a probe, in the order the report passes them. */
const CHAIN = ["delivered", "process", "commit-start", "commit-done", "visible"] as const;

interface Stamp {
  readonly stage: string;
  readonly at: number;
  readonly commits?: number;
}

/** The clock of the stamps (epoch ms with sub-ms digits). */
export function stageNow(): number {
  return performance.timeOrigin + performance.now();
}

/** Collects the stamps of one side's process and of the bench. */
export class StageLog {
  readonly #stamps: Stamp[] = [];
  readonly #probes: { publish: number; puback: number; visible: number }[] = [];

  /** Reads `child`'s stderr: `STAGE` lines are kept, everything else is passed through. */
  watch(child: ChildProcess): void {
    if (!child.stderr) return;
    createInterface({ input: child.stderr }).on("line", (line) => {
      if (!line.startsWith("STAGE ")) {
        process.stderr.write(`${line}\n`);
        return;
      }
      const [, stage, at, commits] = line.split(" ");
      this.#stamps.push({ stage: stage!, at: Number(at), ...(commits ? { commits: Number(commits) } : {}) });
    });
  }

  /** One probe's own stamps (taken by the bench). */
  probe(publish: number, puback: number, visible: number): void {
    this.#probes.push({ publish, puback, visible });
  }

  /**
   * Per stage, the time from the previous stage of the chain the probe has a stamp for (ms,
   * p50/p90/p99/max over the probes), and the commits per store call that carried a probe.
   */
  breakdown(): Record<string, unknown> {
    const probes = [...this.#probes].sort((a, b) => a.publish - b.publish);
    const perProbe = probes.map(
      (p) => new Map<string, Stamp>([["visible", { stage: "visible", at: p.visible }]]),
    );
    const byStage = new Map<string, Stamp[]>();
    for (const stamp of this.#stamps) {
      const list = byStage.get(stamp.stage);
      if (list) list.push(stamp);
      else byStage.set(stamp.stage, [stamp]);
    }
    for (const [stage, stamps] of byStage) {
      stamps.sort((a, b) => a.at - b.at);
      let next = 0;
      probes.forEach((p, i) => {
        while (next < stamps.length && stamps[next]!.at < p.publish) next++;
        if (next < stamps.length) perProbe[i]!.set(stage, stamps[next++]!);
      });
    }
    const stages = new Map<string, ReturnType<typeof histogram>>();
    const record = (stage: string, ms: number) => {
      let h = stages.get(stage);
      if (!h) stages.set(stage, (h = histogram()));
      h.recordValue(Math.max(1, Math.round(ms * 1000)));
    };
    const commits = histogram();
    probes.forEach((p, i) => {
      const seen = perProbe[i]!;
      record("puback", p.puback - p.publish);
      let previous = p.publish;
      let previousStage = "publish";
      for (const stage of CHAIN) {
        const stamp = seen.get(stage);
        if (!stamp) continue;
        record(`${previousStage} → ${stage}`, stamp.at - previous);
        previous = stamp.at;
        previousStage = stage;
      }
      const done = seen.get("commit-done");
      const ack = seen.get("ack");
      if (done && ack) record("commit-done → ack", ack.at - done.at);
      const start = seen.get("commit-start");
      if (start?.commits !== undefined) commits.recordValue(start.commits);
    });
    return {
      probes: probes.length,
      stagesMs: Object.fromEntries([...stages].map(([stage, h]) => [stage, percentiles(h)])),
      commitsPerStoreCall: {
        p50: commits.getValueAtPercentile(50),
        p90: commits.getValueAtPercentile(90),
        max: commits.maxValue,
      },
    };
  }
}
