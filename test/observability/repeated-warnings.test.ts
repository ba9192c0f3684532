import { describe, expect, it } from "vitest";
import { ManualClock } from "../../runtime/core/clock.ts";
import { createLogger } from "../../runtime/observability/logger.ts";
import { RepeatedWarnings } from "../../runtime/observability/repeated-warnings.ts";

function logged() {
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger({ destination: { write: (line: string) => lines.push(JSON.parse(line)) } });
  return { lines, logger };
}

class StoreDown extends Error {
  override name = "RedisCommandError";
}

describe("RepeatedWarnings", () => {
  it("logs the first of a kind at once, counts the rest for 10 s, and reports the count on the next line", async () => {
    const clock = new ManualClock();
    const { lines, logger } = logged();
    const warnings = new RepeatedWarnings(logger, "cluster store error", clock);
    for (let shard = 0; shard < 256; shard++)
      warnings.warn(new StoreDown("Redis at redis://r:6379: no answer within 1000 ms"));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({
      level: 40,
      msg: "cluster store error",
      err: { message: expect.stringContaining("no answer") },
    });
    expect(lines[0]).not.toHaveProperty("repeated");

    await clock.advance(9_999);
    warnings.warn(new StoreDown("Redis at redis://r:6379: no answer within 1000 ms"));
    expect(lines).toHaveLength(1);
    await clock.advance(1);
    warnings.warn(new StoreDown("Redis at redis://r:6379: no answer within 1000 ms"));
    expect(lines).toHaveLength(2);
    expect(lines[1]).toMatchObject({ repeated: 256, sinceMs: 10_000 });
  });

  it("logs each kind of failure on its own, and forgets the oldest kinds beyond 64", () => {
    const clock = new ManualClock();
    const { lines, logger } = logged();
    const warnings = new RepeatedWarnings(logger, "cluster store error", clock);
    warnings.warn(new StoreDown("no answer within 1000 ms"));
    warnings.warn(new Error("the client is closed"));
    warnings.warn("not an Error");
    expect(lines).toHaveLength(3);
    for (let i = 0; i < 64; i++) warnings.warn(new Error(`distinct ${i}`));
    expect(lines).toHaveLength(67);
    // The first kind was forgotten (64 newer kinds came since): it is logged again at once.
    warnings.warn(new StoreDown("no answer within 1000 ms"));
    expect(lines).toHaveLength(68);
    // A recent kind is still held back.
    warnings.warn(new Error("distinct 63"));
    expect(lines).toHaveLength(68);
  });
});
