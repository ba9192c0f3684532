import { describe, expect, it } from "vitest";
import { retryDelay } from "../../runtime/devices/ingress/jetstream-ingress.ts";
import {
  DEFAULT_STREAM,
  deviceSubjectOfStored,
  ingressStreamConfig,
  nodeConsumerConfig,
  partitionDestination,
  shardFilter,
  shardOfFilter,
} from "../../runtime/devices/ingress/stream-config.ts";

describe("ingress stream and consumers", () => {
  it("captures reported state and telemetry and stores them under their shard", () => {
    const config = ingressStreamConfig(DEFAULT_STREAM, 256);
    expect(config.subjects).toEqual(["doppel.dev.*.*.reported", "doppel.dev.*.*.telemetry"]);
    expect(config.subject_transform).toEqual({
      src: "doppel.dev.*.*.*",
      dest: "doppel.in.{{partition(256,1,2)}}.{{wildcard(1)}}.{{wildcard(2)}}.{{wildcard(3)}}",
    });
    expect(config).toMatchObject({ retention: "workqueue", discard: "new", max_msg_size: 1024 * 1024 });
    expect(partitionDestination(8)).toContain("{{partition(8,1,2)}}");
  });

  it("gives each node one durable consumer filtered on the shards it owns, with explicit acks", () => {
    expect(nodeConsumerConfig("ingress-n1", [3, 5], { maxAckPending: 64, ackWaitMs: 30_000 })).toMatchObject({
      durable_name: "ingress-n1",
      filter_subjects: ["doppel.in.3.>", "doppel.in.5.>"],
      ack_policy: "explicit",
      deliver_policy: "all",
      max_ack_pending: 64,
      max_deliver: -1,
      ack_wait: 30_000_000_000,
    });
    expect(shardFilter(12)).toBe("doppel.in.12.>");
    expect(shardOfFilter("doppel.in.12.>")).toBe(12);
    expect(shardOfFilter("doppel.in.>")).toBeUndefined();
    expect(shardOfFilter("doppel.in.1.thermostat.>")).toBeUndefined();
  });

  it("maps a stored subject back to the device subject and its shard", () => {
    expect(deviceSubjectOfStored("doppel.in.17.thermostat.t1.reported")).toEqual({
      subject: "doppel.dev.thermostat.t1.reported",
      shard: 17,
    });
  });

  it("backs off retries from 1 s to at most 30 s", () => {
    expect([1, 2, 3, 4, 5, 6, 7, 50].map(retryDelay)).toEqual([
      1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000,
    ]);
  });
});
