import { describe, expect, it } from "vitest";
import { ErrorCode, InvalidArgument } from "../../../runtime/core/errors.ts";
import {
  FEED_BATCH,
  FEED_IN_FLIGHT,
  parseFeedReply,
  parseFeedRequest,
  RevocationFeed,
  revocationFeedSubject,
} from "../../../runtime/devices/edge/revocation-feed.ts";
import { capturedLogger } from "../../support/captured-logger.ts";
import { eventually } from "../../support/eventually.ts";
import { heldJetStream } from "../../support/held-jetstream.ts";

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

/**
 * The cloud's feed with a fake connection whose STREAM.INFO is held until released
 * (test/support/held-jetstream.ts: no DOPPEL_REVOCATIONS, so a released request is answered
 * `last: 0`). Against real servers: test/integration/edge/edge-cloud-revocation.test.ts.
 */
describe("revocation feed, the cloud's side", () => {
  const subject = revocationFeedSubject("plant-a");
  const empty = { ok: { records: [], last: 0 } };

  it("answers at most FEED_IN_FLIGHT requests at once: UNAVAILABLE beyond, and serves again once they are done", async () => {
    const cloud = heldJetStream();
    const feed = new RevocationFeed(cloud.nc, capturedLogger().logger);
    await feed.start();
    for (let i = 0; i < FEED_IN_FLIGHT; i++) cloud.request(subject, { after: 0 });
    // Every one of them is at the hub's STREAM.INFO, held there.
    await eventually(() => cloud.held() === FEED_IN_FLIGHT, "the requests waiting on STREAM.INFO");
    expect(feed.inFlight).toBe(FEED_IN_FLIGHT);
    cloud.request(subject, { after: 0 });
    expect(cloud.answers).toEqual([{ code: "UNAVAILABLE" }]);
    expect(feed.inFlight).toBe(FEED_IN_FLIGHT);

    cloud.release();
    await eventually(() => feed.inFlight === 0, "the held requests answered");
    expect(cloud.answers.slice(1)).toEqual(Array.from({ length: FEED_IN_FLIGHT }, () => empty));
    cloud.request(subject, { after: 0 });
    await eventually(() => cloud.answers.length === FEED_IN_FLIGHT + 2, "a later request answered");
    expect(cloud.answers.at(-1)).toEqual(empty);
    await feed.stop();
  });

  it("logs a subscription error and an answer it cannot send, and goes on answering", async () => {
    const cloud = heldJetStream();
    const { logger, lines } = capturedLogger();
    const feed = new RevocationFeed(cloud.nc, logger);
    await feed.start();
    cloud.release();
    cloud.subscriptionError(new Error("Permissions Violation for Subscription to doppel.edge.*.revocations"));
    cloud.request(subject, { after: 0 }, () => {
      throw new Error("'payload' max_payload size exceeded");
    });
    await eventually(
      () => lines.some((line) => line.msg === "revocation feed: cannot reply"),
      "the failed answer logged",
    );
    expect(lines.map((line) => line.msg)).toContain("revocation feed: a request could not be received");
    cloud.request(subject, { after: 0 });
    await eventually(() => cloud.answers.length === 1, "the next request answered");
    expect(cloud.answers).toEqual([empty]);
    await feed.stop();
  });
});
