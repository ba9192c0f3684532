import { describe, expect, it } from "vitest";
import { ErrorCode } from "../../../runtime/core/errors.ts";
import { describeFork, findFork, judgeAppend } from "../../../runtime/persistence/cassandra/conflicts.ts";

const row = (seq: number, commitId: string) => ({ seq, commitId });

describe("cassandra conflict detection", () => {
  it("appends when the log ends exactly at expectedSeq", () => {
    expect(judgeAppend("t/1", [], 0, "c1").kind).toBe("append");
    expect(judgeAppend("t/1", [row(5, "a")], 5, "c1").kind).toBe("append");
  });

  it("recognises a retry by the commit id at expectedSeq + 1", () => {
    expect(judgeAppend("t/1", [row(5, "a"), row(6, "c1"), row(7, "c1")], 5, "c1").kind).toBe("retried");
    expect(judgeAppend("t/1", [row(1, "c1")], 0, "c1").kind).toBe("retried");
  });

  it("refuses a stale expectedSeq and one beyond the end of the log", () => {
    const stale = judgeAppend("t/1", [row(5, "a"), row(6, "b")], 5, "c1");
    expect(stale.kind).toBe("conflict");
    if (stale.kind === "conflict") {
      expect(stale.error.code).toBe(ErrorCode.ConcurrencyConflict);
      expect(stale.error.details).toEqual({ expectedSeq: 5, actualSeq: 6 });
    }
    const ahead = judgeAppend("t/1", [], 5, "c1");
    expect(ahead.kind).toBe("conflict");
    expect(judgeAppend("t/1", [row(1, "a")], 0, undefined).kind).toBe("conflict");
  });

  it("finds the first sequence number held by two commits, ignoring repeated rows of one commit", () => {
    expect(findFork([row(1, "a"), row(2, "a"), row(2, "a")])).toBeUndefined();
    const fork = findFork([row(3, "x"), row(4, "y"), row(3, "z"), row(4, "w")]);
    expect(fork?.seq).toBe(3);
    expect(fork?.commits.map((c) => c.commitId)).toEqual(["x", "z"]);
    const verdict = judgeAppend("t/1", [row(3, "x"), row(3, "z")], 3, "c1");
    expect(verdict.kind).toBe("conflict");
  });

  it("describes a fork with both writers", () => {
    const text = describeFork("pump/p1", {
      seq: 7,
      commits: [
        { seq: 7, commitId: "a", writer: { node: "n1", epoch: 3 } },
        { seq: 7, commitId: "b", writer: { node: "n2", epoch: 4 } },
      ],
    });
    expect(text).toBe(
      "pump/p1: two writers appended at version 7: commit a by n1 (epoch 3) and commit b by n2 (epoch 4); nothing was merged",
    );
  });
});
