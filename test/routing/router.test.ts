import { describe, expect, it } from "vitest";
import type { Transport } from "../../cluster/transport/transport.ts";
import { SystemClock } from "../../runtime/activation/clock.ts";
import { TwinRegistry } from "../../runtime/activation/twin-type.ts";
import type { LocalTwins } from "../../runtime/node/local-twins.ts";
import type { Placement } from "../../runtime/routing/placement.ts";
import { Router } from "../../runtime/routing/router.ts";
import { Thermostat } from "../../twins/thermostat.ts";

/** A router of node "a" whose local twins and transport only record where calls went. */
function router(placement: Omit<Placement, "nodeId">) {
  const calls: string[] = [];
  const local = {
    report: async () => {
      calls.push("local");
      return { version: 1, duplicate: false };
    },
  } as unknown as LocalTwins;
  const transport = {
    request: async (subject: string) => {
      calls.push(subject);
      return { data: new TextEncoder().encode(JSON.stringify({ ok: { version: 2, duplicate: false } })) };
    },
  } as unknown as Transport;
  const registry = new TwinRegistry({ snapshotEvery: 100, idleTimeoutMs: 60_000 });
  registry.register(Thermostat);
  const routed = new Router(local, { nodeId: "a", ...placement }, transport, () => 3, registry, SystemClock, {
    defaultTimeoutMs: 2000,
    retryDelayMs: 5,
  });
  return { routed, calls };
}

const ref = { type: "thermostat", id: "t1" };

describe("router", () => {
  it("runs a call here while this node holds the shard's lease, even when the ring already names the next owner", async () => {
    const { routed, calls } = router({ ownerOf: () => "b", owns: () => true });
    expect(await routed.report(ref, { temperature: 20 })).toEqual({ version: 1, duplicate: false });
    expect(calls).toEqual(["local"]);
  });

  it("sends a call to the ring's owner when this node does not hold the lease", async () => {
    const { routed, calls } = router({ ownerOf: () => "b", owns: () => false });
    expect(await routed.report(ref, { temperature: 20 })).toEqual({ version: 2, duplicate: false });
    expect(calls).toEqual(["doppel.node.b.rpc"]);
  });

  it("waits (retrying) while the ring names this node but its lease is not held yet", async () => {
    let held = false;
    setTimeout(() => (held = true), 50);
    const { routed, calls } = router({ ownerOf: () => "a", owns: () => held });
    expect(await routed.report(ref, { temperature: 20 })).toEqual({ version: 1, duplicate: false });
    expect(calls).toEqual(["local"]);
  });
});
