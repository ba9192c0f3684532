import { describe, expect, it } from "vitest";
import {
  edgeSourceHash,
  forgery,
  natsNameHash,
  sourceHashOf,
} from "../../runtime/replication/batch-origin.ts";
import { edgeLogSubject, edgeOfLogSubject } from "../../runtime/replication/replicated-batch.ts";

/** A `Nats-Stream-Source` header as nats-server stamps it on a message sourced from `edge`'s log. */
const stamp = (edge: string, subject: string) =>
  `DOPPEL_EDGE_LOG:${edgeSourceHash(edge)}:C=tw478Fg8 7 > > ${subject}`;

describe("batch origin", () => {
  it("hashes names as nats-server's getHash does (values computed with nats-server's own code)", () => {
    expect(natsNameHash("$JS.plant-a.API")).toBe("LTXMcqHH");
    expect(natsNameHash("$JS.plant-x.API")).toBe("XNFSqSx8");
    expect(natsNameHash("DOPPEL_CLOUD_SOURCE")).toBe("tw478Fg8");
    expect(edgeSourceHash("plant-a")).toBe("LTXMcqHH");
  });

  it("reads the edge of a log subject; none from another subject or an empty edge", () => {
    expect(edgeOfLogSubject(edgeLogSubject("plant-a", { type: "thermostat", id: "t1" }))).toBe("plant-a");
    expect(edgeOfLogSubject("doppel.edge-log.plant-a.thermostat.t1")).toBe("plant-a");
    expect(edgeOfLogSubject("doppel.edge-log.plant-a")).toBeUndefined();
    expect(edgeOfLogSubject("doppel.edge-log..thermostat.t1")).toBeUndefined();
    expect(edgeOfLogSubject("doppel.edge-logs.plant-a.thermostat.t1")).toBeUndefined();
    expect(edgeOfLogSubject("doppel.dev.thermostat.t1.reported")).toBeUndefined();
  });

  it("reads the source's API hash from the header; none for a local source or no header", () => {
    expect(sourceHashOf(stamp("plant-a", "doppel.edge-log.plant-a.t.1"))).toBe("LTXMcqHH");
    expect(sourceHashOf("DOPPEL_EDGE_LOG:LTXMcqHH 3 > > s")).toBe("LTXMcqHH");
    expect(sourceHashOf("LOCAL:C=tw478Fg8 3 > > s")).toBeUndefined();
    expect(sourceHashOf("LOCAL 3 > > s")).toBeUndefined();
    expect(sourceHashOf(undefined)).toBeUndefined();
    expect(sourceHashOf("")).toBeUndefined();
  });

  it("accepts a batch only when its edge field, its subject and its source name one edge", () => {
    const subject = "doppel.edge-log.plant-a.thermostat.b1";
    expect(forgery("plant-a", subject, stamp("plant-a", subject), "plant-a")).toBeUndefined();
    // The field names another edge than the subject.
    expect(
      forgery("plant-a", "doppel.edge-log.plant-x.thermostat.b1", stamp("plant-x", subject), "plant-x"),
    ).toMatchObject({
      named: "plant-a",
      subjectEdge: "plant-x",
      reason: expect.stringContaining("names edge plant-a but came on edge plant-x's subject"),
    });
    // Field and subject agree, but the hub took it from another edge's source.
    expect(forgery("plant-a", subject, stamp("plant-x", subject), "plant-x")).toMatchObject({
      reason: expect.stringContaining("came through the source of edge plant-x"),
    });
    expect(forgery("plant-a", subject, stamp("plant-x", subject), undefined)).toMatchObject({
      reason: expect.stringContaining(`another edge (hash ${edgeSourceHash("plant-x")})`),
    });
    // Not sourced at all (published straight into the cloud's stream).
    expect(forgery("plant-a", subject, undefined, undefined)).toMatchObject({
      reason: expect.stringContaining("not sourced from an edge's log"),
    });
    expect(forgery("plant-a", "doppel.edge-logs.DOPPEL_EDGE_LOGS", undefined, undefined)).toMatchObject({
      subjectEdge: undefined,
    });
  });
});
