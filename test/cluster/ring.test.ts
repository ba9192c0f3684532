import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { diff, routes } from "../../cluster/ring/diff.ts";
import {
  BALANCE_BOUND,
  DEFAULT_VIRTUAL_NODES,
  EmptyRingError,
  HashRing,
  JOIN_MOVES_MIN,
} from "../../cluster/ring/hash-ring.ts";
import { murmur3 } from "../../cluster/ring/murmur3.ts";

const S = 256;
const RUNS = 300;

/** 1..12 distinct node ids (any non-empty strings). */
const members = fc.uniqueArray(fc.string({ minLength: 1, maxLength: 24 }), { minLength: 1, maxLength: 12 });

function loads(assignment: readonly string[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const owner of assignment) counts.set(owner, (counts.get(owner) ?? 0) + 1);
  return counts;
}

describe("murmur3", () => {
  it("matches the reference MurmurHash3 x86_32 vectors", () => {
    expect(murmur3("")).toBe(0);
    expect(murmur3("", 1)).toBe(0x514e28b7);
    expect(murmur3("a")).toBe(0x3c2569b2);
    expect(murmur3("abc")).toBe(0xb3dd93fa);
    expect(murmur3("test")).toBe(0xba6bd213);
    expect(murmur3("Hello, world!")).toBe(0xc0363e43);
    expect(murmur3("The quick brown fox jumps over the lazy dog")).toBe(0x2e4ff723);
  });
});

describe("placement", () => {
  it("gives every shard exactly one owner, a member", () => {
    fc.assert(
      fc.property(members, (ids) => {
        const assignment = new HashRing(ids).assignment(S);
        const memberSet = new Set(ids);
        expect(assignment).toHaveLength(S);
        expect(assignment.filter((owner) => !memberSet.has(owner))).toEqual([]);
      }),
      { numRuns: RUNS },
    );
  });

  it("is the same on every node, whatever order the members were learnt in", () => {
    fc.assert(
      fc.property(
        members.chain((ids) =>
          fc.tuple(fc.constant(ids), fc.shuffledSubarray(ids, { minLength: ids.length })),
        ),
        ([ids, shuffled]) => {
          expect(new HashRing(shuffled).assignment(S)).toEqual(new HashRing(ids).assignment(S));
          expect(new HashRing([...ids, ...ids]).assignment(S)).toEqual(new HashRing(ids).assignment(S));
        },
      ),
      { numRuns: RUNS },
    );
  });

  it(`keeps every node at or below ${BALANCE_BOUND} × S/N shards (V = ${DEFAULT_VIRTUAL_NODES})`, () => {
    fc.assert(
      fc.property(members, (ids) => {
        const max = Math.max(...loads(new HashRing(ids).assignment(S)).values());
        expect(max).toBeLessThanOrEqual((BALANCE_BOUND * S) / ids.length);
      }),
      { numRuns: RUNS },
    );
    for (let n = 1; n <= 12; n++) {
      const ids = Array.from({ length: n }, (_, i) => `node-${i + 1}`);
      const max = Math.max(...loads(new HashRing(ids).assignment(S)).values());
      expect(max, `${n} nodes`).toBeLessThanOrEqual((BALANCE_BOUND * S) / n);
    }
  });

  it("moves shards only to the node that joined, about S/(N+1) of them", () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.string({ minLength: 1, maxLength: 24 }), { minLength: 2, maxLength: 13 }),
        (ids) => {
          const joining = ids.at(-1)!;
          const before = new HashRing(ids.slice(0, -1)).assignment(S);
          const after = new HashRing(ids).assignment(S);
          const moves = diff(before, after);
          expect(moves.filter((move) => move.to !== joining)).toEqual([]);
          // What moves is exactly the new node's share.
          expect(moves.length).toBe(after.filter((owner) => owner === joining).length);
          const fair = S / ids.length;
          expect(moves.length).toBeGreaterThanOrEqual(JOIN_MOVES_MIN * fair);
          expect(moves.length).toBeLessThanOrEqual(BALANCE_BOUND * fair);
        },
      ),
      { numRuns: RUNS },
    );
  });

  it("moves only the shards of the node that left", () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.string({ minLength: 1, maxLength: 24 }), { minLength: 2, maxLength: 12 }),
        fc.nat(),
        (ids, pick) => {
          const leaving = ids[pick % ids.length]!;
          const ring = new HashRing(ids);
          const before = ring.assignment(S);
          const after = new HashRing(ids.filter((id) => id !== leaving)).assignment(S);
          const moves = diff(before, after);
          expect(moves.filter((move) => move.from !== leaving)).toEqual([]);
          expect(moves.map((m) => m.shard)).toEqual(ring.shardsOf(leaving, S));
        },
      ),
      { numRuns: RUNS },
    );
  });

  it("refuses to place a shard on an empty ring", () => {
    const ring = new HashRing([]);
    expect(ring.empty).toBe(true);
    expect(() => ring.ownerOf(0)).toThrow(EmptyRingError);
    expect(() => ring.assignment(1)).toThrow(EmptyRingError);
    expect(ring.assignment(0)).toEqual([]);
    expect(ring.shardsOf("a", S)).toEqual([]);
  });

  it("refuses invalid members, virtual node counts and shards", () => {
    expect(() => new HashRing([""])).toThrow(RangeError);
    expect(() => new HashRing(["a"], { virtualNodes: 0 })).toThrow(RangeError);
    expect(() => new HashRing(["a"], { virtualNodes: 1.5 })).toThrow(RangeError);
    expect(() => new HashRing(["a"]).ownerOf(-1)).toThrow(RangeError);
    expect(() => new HashRing(["a"]).ownerOf(0.5)).toThrow(RangeError);
    expect(() => new HashRing(["a"]).assignment(-1)).toThrow(RangeError);
  });

  it("places a single node's shards all on it, whatever V", () => {
    expect(new Set(new HashRing(["only"], { virtualNodes: 1 }).assignment(S))).toEqual(new Set(["only"]));
  });
});

describe("diff", () => {
  it("lists the shards that changed owner, and groups them by route", () => {
    const before = ["a", "a", "b", "b", "c"];
    const after = ["a", "c", "b", "a", "a"];
    const moves = diff(before, after);
    expect(moves).toEqual([
      { shard: 1, from: "a", to: "c" },
      { shard: 3, from: "b", to: "a" },
      { shard: 4, from: "c", to: "a" },
    ]);
    expect(routes(moves)).toEqual([
      { from: "a", to: "c", shards: [1] },
      { from: "b", to: "a", shards: [3] },
      { from: "c", to: "a", shards: [4] },
    ]);
    expect(diff(before, before)).toEqual([]);
  });

  it("refuses assignments of different shard counts", () => {
    expect(() => diff(["a"], ["a", "b"])).toThrow(RangeError);
  });
});
