import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { shardOf } from "../../../cluster/ring/shard.ts";
import { NatsTransport } from "../../../cluster/transport/nats.ts";
import { partitionDestination } from "../../../runtime/devices/ingress/stream-config.ts";
import { natsUrl } from "./harness.ts";

/** A scratch stream with the ingress stream's transform, on subjects no other stream uses. */
const STREAM = "DOPPEL_PARTITION_CHECK";

describe("shard function", () => {
  let nats: NatsTransport;
  beforeAll(async () => {
    nats = await NatsTransport.connect({ servers: natsUrl() });
  });
  afterAll(async () => {
    await nats.close();
  });

  for (const shards of [8, 256, 1000]) {
    it(`equals the partition NATS assigns with {{partition(${shards},1,2)}} (type and id tokens)`, async () => {
      const jsm = await jetstreamManager(nats.connection);
      await jsm.streams.delete(STREAM).catch(() => false);
      await jsm.streams.add({
        name: STREAM,
        subjects: ["doppelcheck.dev.*.*.*"],
        storage: "memory",
        subject_transform: {
          src: "doppelcheck.dev.*.*.*",
          dest: partitionDestination(shards).replace(/^doppel\.in/, "doppelcheck.in"),
        },
      });
      try {
        const js = jetstream(nats.connection);
        const refs: [string, string][] = [];
        for (let i = 0; i < 200; i++) {
          refs.push(
            ["thermostat", `t-${i}`],
            ["pump", `p:${i * 7919}`],
            ["Valve_2", `_${i.toString(36)}x-y`],
          );
        }
        await Promise.all(
          refs.map(([type, id]) => js.publish(`doppelcheck.dev.${type}.${id}.reported`, "{}")),
        );
        const mismatches: string[] = [];
        for (let seq = 1; seq <= refs.length; seq++) {
          const stored = await jsm.streams.getMessage(STREAM, { seq });
          const [, , shard, type, id] = stored!.subject.split(".");
          if (Number(shard) !== shardOf(type!, id!, shards)) mismatches.push(`${type}/${id}: NATS ${shard}`);
        }
        expect(mismatches).toEqual([]);
      } finally {
        await jsm.streams.delete(STREAM).catch(() => false);
      }
    });
  }
});
