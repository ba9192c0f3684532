import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  bucketFirstSeq,
  bucketLastSeq,
  compareCodePoints,
  eventBucket,
  fnv1a,
  opensBucket,
  telemetryWindow,
  viewBucket,
} from "../../../runtime/persistence/cassandra/buckets.ts";

describe("cassandra buckets", () => {
  it("event buckets: bucket b holds seq b*size+1 .. (b+1)*size", () => {
    expect([1, 2, 3, 4, 5, 8, 9].map((seq) => eventBucket(seq, 4))).toEqual([0, 0, 0, 0, 1, 1, 2]);
    expect(eventBucket(0, 4)).toBe(0);
    expect([bucketFirstSeq(2, 4), bucketLastSeq(2, 4)]).toEqual([9, 12]);
    expect([1, 2, 5, 9, 13].map((seq) => opensBucket(seq, 4))).toEqual([true, false, true, true, true]);
    expect(opensBucket(0, 4)).toBe(false);
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 1e9 }), fc.integer({ min: 1, max: 10_000 }), (seq, size) => {
        const b = eventBucket(seq, size);
        return bucketFirstSeq(b, size) <= seq && seq <= bucketLastSeq(b, size);
      }),
    );
  });

  it("view buckets: FNV-1a of the id's UTF-8 bytes, stable and spread evenly", () => {
    // Reference values of 32-bit FNV-1a.
    expect(fnv1a("")).toBe(0x811c9dc5);
    expect(fnv1a("a")).toBe(0xe40c292c);
    expect(fnv1a("foobar")).toBe(0xbf9cf968);
    expect(viewBucket("thermostat-001", 16)).toBe(fnv1a("thermostat-001") % 16);
    const counts = new Array(16).fill(0) as number[];
    for (let i = 0; i < 16_000; i++) counts[viewBucket(`d-${i}`, 16)]!++;
    for (const count of counts) expect(count).toBeGreaterThan(800);
  });

  it("telemetry windows are aligned to the epoch", () => {
    expect(telemetryWindow(0, 3_600_000)).toBe(0);
    expect(telemetryWindow(3_599_999, 3_600_000)).toBe(0);
    expect(telemetryWindow(3_600_000, 3_600_000)).toBe(1);
  });

  it("compareCodePoints orders like Cassandra (UTF-8 bytes), also above U+FFFF", () => {
    expect(compareCodePoints("\uffff", "😀")).toBeLessThan(0); // "<" in JS says the opposite
    expect("\uffff" < "😀").toBe(false);
    fc.assert(
      fc.property(fc.string({ unit: "grapheme" }), fc.string({ unit: "grapheme" }), (a, b) => {
        const expected = Math.sign(Buffer.compare(Buffer.from(a), Buffer.from(b)));
        return Math.sign(compareCodePoints(a, b)) === expected;
      }),
    );
  });
});
