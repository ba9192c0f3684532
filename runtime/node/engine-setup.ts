/**
 * The engine of a node and the local twin API over it, built from the configuration's limits,
 * with every count and duration reported into the node's metrics.
 */

import { shardOf } from "../../cluster/ring/shard.ts";
import type { Clock } from "../core/clock.ts";
import type { ShardOwnership } from "../core/ownership.ts";
import type { TwinClass } from "../core/twin.ts";
import { Engine } from "../engine/engine.ts";
import { LocalTwins } from "../engine/local-twins.ts";
import { TwinRegistry } from "../engine/twin-type.ts";
import type { Logger } from "../observability/logger.ts";
import type { NodeMetrics } from "../observability/metrics.ts";
import type { EventStore } from "../persistence/event-store.ts";
import type { NodeConfig } from "./options.ts";

/** Registers the twin classes; `InvalidArgument` names a class that is not a valid twin. */
export function registerTwins(twins: readonly TwinClass[], config: NodeConfig): TwinRegistry {
  const registry = new TwinRegistry({
    snapshotEvery: config.limits.snapshotEvery,
    idleTimeoutMs: config.limits.idleTimeout,
  });
  for (const cls of twins) registry.register(cls);
  return registry;
}

/** The engine: catalog, group commit, reminders and change feed, observed by `metrics`. */
export function createEngine(parts: {
  readonly config: NodeConfig;
  readonly nodeId: string;
  readonly store: EventStore;
  readonly registry: TwinRegistry;
  readonly clock: Clock;
  readonly ownership: ShardOwnership;
  readonly metrics: NodeMetrics;
  readonly logger: Logger;
}): Engine {
  const { config, metrics } = parts;
  const limits = config.limits;
  const m = metrics.metrics;
  const counts = metrics.counts;
  return new Engine(
    parts.store,
    parts.registry,
    parts.clock,
    parts.ownership,
    (type, twinId) => shardOf(type, twinId, config.shards),
    {
      nodeId: parts.nodeId,
      maxResident: limits.maxResident,
      idleSweepMs: limits.idleSweep,
      mailboxSize: limits.mailboxSize,
      maxPendingEvents: limits.maxPendingEvents,
      callTimeoutMs: limits.callTimeout,
      reminderPollMs: limits.reminderPoll,
      reminderBatch: 1000,
      commitMaxBatch: 512,
      commitMaxInFlight: 4,
      deviceCommandTimeoutMs: limits.deviceCommandTimeout,
      maxQueuedDeviceCommands: limits.maxQueuedDeviceCommands,
      twinLimits: {
        maxReportedBytes: limits.maxReportedBytes,
        maxDesiredBytes: limits.maxDesiredBytes,
        maxStateBytes: limits.maxStateBytes,
      },
    },
    parts.logger,
    (_commits, events, millis, failed) => {
      m.persistDuration.record(millis, { outcome: failed ? "failed" : "ok" });
      if (!failed) m.persistedEvents.add(events);
    },
    {
      activated: () => {
        counts.activations++;
      },
      passivated: () => {
        counts.passivations++;
      },
      quarantined: () => {
        counts.quarantines++;
      },
      conflicted: () => {
        counts.conflicts++;
      },
      overQuota: () => m.quotaExceeded.add(1, { quota: "maxTwins" }),
      turn: (kind, ok, millis) => {
        let turns = counts.turns.get(kind);
        if (!turns) {
          turns = { ok: 0, failed: 0 };
          counts.turns.set(kind, turns);
        }
        if (ok) turns.ok++;
        else turns.failed++;
        metrics.turnDuration.record(millis);
      },
    },
  );
}

/** The twin API of the twins this node runs itself: validated, bounded by the configured limits. */
export function localTwins(engine: Engine, config: NodeConfig): LocalTwins {
  const limits = config.limits;
  return new LocalTwins(engine, {
    json: { maxBytes: limits.maxPayloadBytes, maxDepth: limits.maxJsonDepth },
    defaultTimeoutMs: limits.requestTimeout,
    maxQueryLimit: 1000,
    maxHistoryLimit: 10_000,
    maxTelemetryLimit: 100_000,
  });
}
