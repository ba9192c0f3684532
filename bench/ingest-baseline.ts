/**
 * The hand-written side of `bench:ingest`, run as its own process (as the node is): what a
 * competent engineer would write with the same libraries and the same durability, without
 * Doppel's runtime.
 *
 * - The same JetStream layout as a Doppel node: a work-queue stream with the same settings
 *   (file storage, the same subject transform into `S` shard partitions) on its own subjects
 *   (`doppelbare.dev.<type>.<id>.reported`), and one durable consumer per process filtered on all
 *   `S` shard subjects, with the node's `maxAckPending`, `ackWait` and pull batch.
 * - The same store write: each report runs the Thermostat's own schema, shadow merge, `onReported`
 *   and `apply` (`HandWrittenTwin`, the `bench:engine` baseline) and its events and view are
 *   written with the same store class (`SqliteEventStore` with `synchronous=FULL`, or
 *   `CassandraEventStore` on its own keyspace), group-committed: while one `commit` call runs,
 *   the reports that arrive meanwhile are folded per twin and go in the next call.
 * - Each message is acked after its commit returned.
 *
 *   node --import tsx bench/ingest-baseline.ts <nats url> <shards> sqlite <file>
 *   node --import tsx bench/ingest-baseline.ts <nats url> <shards> cassandra <host:port> <keyspace>
 *
 * Prints `READY` once consuming; stops on SIGTERM.
 */
import { AckPolicy, DeliverPolicy, type JsMsg, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { nanos } from "@nats-io/nats-core";
import { shardOf } from "../cluster/ring/shard.ts";
import { NatsTransport } from "../cluster/transport/nats.ts";
import type { JsonObject } from "../runtime/core/json.ts";
import type { TwinCommit } from "../runtime/core/records.ts";
import {
  DEFAULT_CONSUMER,
  DEFAULT_STREAM,
  ingressStreamConfig,
} from "../runtime/devices/ingress/stream-config.ts";
import { stageClock } from "../runtime/observability/stage-clock.ts";
import { CassandraEventStore } from "../runtime/persistence/cassandra/store.ts";
import type { EventStore } from "../runtime/persistence/event-store.ts";
import { SqliteEventStore } from "../runtime/persistence/sqlite-store.ts";
import { HandWrittenTwin } from "./hand-written-twin.ts";
import { BARE_PREFIX, BARE_STREAM } from "./lib.ts";

const [url, shardsText, kind, where, keyspace] = process.argv.slice(2);
if (!url || !shardsText || !where || (kind !== "sqlite" && kind !== "cassandra"))
  throw new Error(
    "usage: ingest-baseline.ts <nats url> <shards> sqlite <file> | cassandra <host:port> <keyspace>",
  );
const shards = Number(shardsText);

const store: EventStore =
  kind === "sqlite"
    ? new SqliteEventStore({ path: where, synchronous: "full" })
    : await CassandraEventStore.open({
        contactPoints: [where],
        localDataCenter: process.env["DOPPEL_CASSANDRA_DC"] ?? "datacenter1",
        keyspace: keyspace ?? "doppel_bench_bare",
      });

const nats = await NatsTransport.connect({ servers: url, name: "bench-bare" });
const jsm = await jetstreamManager(nats.connection);
// The node's stream configuration, on the baseline's own subjects.
const config = ingressStreamConfig({ ...DEFAULT_STREAM, name: BARE_STREAM }, shards);
await jsm.streams.delete(BARE_STREAM).catch(() => false);
await jsm.streams.add({
  ...config,
  subjects: [`${BARE_PREFIX}.dev.*.*.reported`],
  subject_transform: {
    src: `${BARE_PREFIX}.dev.*.*.*`,
    dest: `${BARE_PREFIX}.in.{{partition(${shards},1,2)}}.{{wildcard(1)}}.{{wildcard(2)}}.{{wildcard(3)}}`,
  },
});
await jsm.consumers.add(BARE_STREAM, {
  durable_name: "bare",
  filter_subjects: Array.from({ length: shards }, (_, shard) => `${BARE_PREFIX}.in.${shard}.>`),
  ack_policy: AckPolicy.Explicit,
  deliver_policy: DeliverPolicy.All,
  ack_wait: nanos(DEFAULT_CONSUMER.ackWaitMs),
  max_deliver: -1,
  max_ack_pending: DEFAULT_CONSUMER.maxAckPending,
});

const writer = { node: "bare", epoch: Date.now() * 1000 };
const decoder = new TextDecoder();
const twins = new Map<string, HandWrittenTwin>();
/** Reports waiting for the next commit, by twin id, in arrival order. */
let pending = new Map<string, JsMsg[]>();
let committing = false;

function onMessage(msg: JsMsg): void {
  const id = msg.subject.split(".")[4]!;
  stageClock("delivered", id);
  const queue = pending.get(id);
  if (queue) queue.push(msg);
  else pending.set(id, [msg]);
  if (!committing) void commitLoop();
}

/** Group commit: one `commit` call at a time, carrying every twin with reports waiting. */
async function commitLoop(): Promise<void> {
  committing = true;
  while (pending.size > 0) {
    const batch = pending;
    pending = new Map();
    const commits: TwinCommit[] = [];
    const acks: JsMsg[][] = [];
    for (const [id, messages] of batch) {
      let twin = twins.get(id);
      if (!twin) {
        twin = new HandWrittenTwin({ type: "thermostat", id });
        twins.set(id, twin);
      }
      for (const msg of messages) twin.report(JSON.parse(decoder.decode(msg.data)) as JsonObject);
      const causation = messages[messages.length - 1]!.headers?.get("Nats-Msg-Id") ?? "";
      commits.push(twin.takeCommit(shardOf("thermostat", id, shards), writer, causation));
      acks.push(messages);
    }
    for (const commit of commits) stageClock("commit-start", commit.ref.id, commits.length);
    const results = await store.commit(commits);
    for (const commit of commits) stageClock("commit-done", commit.ref.id);
    results.forEach((error, i) => {
      if (error) throw error; // a benchmark: nothing else writes these twins
      for (const msg of acks[i]!) {
        msg.ack();
        stageClock("ack", msg.subject);
      }
    });
  }
  committing = false;
}

const consumer = await jetstream(nats.connection).consumers.get(BARE_STREAM, "bare");
const messages = await consumer.consume({
  max_messages: Math.min(DEFAULT_CONSUMER.maxAckPending, 512),
  callback: onMessage,
});
process.stdout.write("READY\n");
process.once("SIGTERM", () => {
  void (async () => {
    await messages.close();
    await jsm.streams.delete(BARE_STREAM).catch(() => false);
    await nats.close();
    await store.close();
    process.exit(0);
  })();
});
