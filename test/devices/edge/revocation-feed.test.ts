import { describe, expect, it } from "vitest";
import { ErrorCode, InvalidArgument } from "../../../runtime/core/errors.ts";
import {
  FEED_BATCH,
  parseFeedReply,
  parseFeedRequest,
  revocationFeedSubject,
} from "../../../runtime/devices/edge/revocation-feed.ts";

const bytes = (value: unknown) =>
  new TextEncoder().encode(typeof value === "string" ? value : JSON.stringify(value));
const record = (seq: number) => ({ seq, subject: "doppel.revocations.thermostat.t1", data: "{}" });

describe("revocation feed", () => {
  it("asks on the edge's own subject with the last sequence it copied", () => {
    expect(revocationFeedSubject("plant-a")).toBe("doppel.edge.plant-a.revocations");
    expect(parseFeedRequest(bytes({ after: 0 }))).toBe(0);
    expect(parseFeedRequest(bytes({ after: 41 }))).toBe(41);
    for (const body of ["nope", {}, { after: -1 }, { after: 1.5 }, { after: "3" }, null])
      expect(() => parseFeedRequest(bytes(body))).toThrow(InvalidArgument);
  });

  it("takes a page only in order, after what was asked, within the cloud's last sequence", () => {
    expect(parseFeedReply(bytes({ ok: { records: [record(5), record(7)], last: 9 } }), 4)).toEqual({
      records: [record(5), record(7)],
      last: 9,
    });
    const refused = [
      "not json",
      { ok: { records: [record(4)], last: 9 } }, // not after `after`
      { ok: { records: [record(6), record(5)], last: 9 } }, // out of order
      { ok: { records: [record(10)], last: 9 } }, // beyond the last sequence
      { ok: { records: [{ seq: 6, subject: 1, data: "{}" }], last: 9 } },
      { ok: { records: Array.from({ length: FEED_BATCH + 1 }, (_, i) => record(5 + i)), last: 999 } },
      { ok: { last: 9 } },
    ];
    for (const body of refused) expect(() => parseFeedReply(bytes(body), 4)).toThrow(InvalidArgument);
  });

  it("passes on when the hub's stream was created, and refuses a creation that is not a string", () => {
    const created = "2026-12-03T14:00:00.123456789Z";
    expect(parseFeedReply(bytes({ ok: { records: [record(5)], last: 5, created } }), 4)).toEqual({
      records: [record(5)],
      last: 5,
      created,
    });
    expect(() => parseFeedReply(bytes({ ok: { records: [], last: 5, created: 7 } }), 4)).toThrow(
      InvalidArgument,
    );
  });

  it("passes the cloud's error on as it came", () => {
    const wire = {
      error: {
        code: ErrorCode.InvalidArgument,
        message: "revocation feed request: after must be an integer ≥ 0",
      },
    };
    expect(() => parseFeedReply(bytes(wire), 0)).toThrow(/after must be an integer/);
  });
});
