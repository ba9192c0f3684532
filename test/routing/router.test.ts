import { describe, expect, it } from "vitest";
import { type Transport, TransportError } from "../../cluster/transport/transport.ts";
import { SystemClock } from "../../runtime/core/clock.ts";
import type { LocalTwins } from "../../runtime/engine/local-twins.ts";
import { TwinRegistry } from "../../runtime/engine/twin-type.ts";
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

  describe("a call whose node goes away before answering", () => {
    /**
     * Node "b" owns the shard and takes calls but never answers them; once `kill()` is called
     * nobody listens on its subject (no responders) and this node ("a") holds the shard's lease.
     * With `slow`, "b" stays alive (answers pings) and answers calls after 300 ms.
     */
    function dying(options: { slow?: boolean } = {}) {
      let dead = false;
      const calls: string[] = [];
      let callTaken: () => void = () => {};
      /** Resolves once "b" has taken a call (not a ping): the moment to kill it. */
      const taken = new Promise<void>((resolve) => {
        callTaken = resolve;
      });
      const local = {
        get: async () => ({ type: "thermostat", id: "t1", version: 7 }),
      } as unknown as LocalTwins;
      const transport = {
        request: async (subject: string, data: Uint8Array) => {
          const op = (JSON.parse(new TextDecoder().decode(data)) as { op: string }).op;
          calls.push(`${subject} ${op}`);
          if (dead) throw new TransportError("no-responders", `no responders on ${subject}`);
          if (op === "ping") return { data: new TextEncoder().encode('{"ok":"pong"}') };
          callTaken();
          if (options.slow) {
            await new Promise((resolve) => setTimeout(resolve, 300));
            return { data: new TextEncoder().encode('{"ok":{"answered":"late"}}') };
          }
          return new Promise(() => {}); // taken, never answered
        },
      } as unknown as Transport;
      const registry = new TwinRegistry({ snapshotEvery: 100, idleTimeoutMs: 60_000 });
      registry.register(Thermostat);
      const placement = { nodeId: "a", ownerOf: () => (dead ? "a" : "b"), owns: () => dead };
      const routed = new Router(local, placement, transport, () => 3, registry, SystemClock, {
        defaultTimeoutMs: 20_000,
        retryDelayMs: 5,
        livenessEveryMs: 20,
      });
      const kill = () => {
        dead = true;
      };
      return { routed, calls, kill, killOnceTaken: () => void taken.then(kill) };
    }

    it("runs a read again on the shard's next owner", async () => {
      const { routed, calls, killOnceTaken } = dying();
      killOnceTaken();
      expect(await routed.get(ref)).toEqual({ type: "thermostat", id: "t1", version: 7 });
      expect(calls[0]).toBe("doppel.node.b.rpc get");
      expect(calls).toContain("doppel.node.b.rpc ping");
    });

    it("fails a command with UNAVAILABLE saying its outcome is unknown, long before its deadline", async () => {
      const { routed, killOnceTaken } = dying();
      killOnceTaken();
      const failure = await routed.invoke(ref, "setTarget", { target: 21 }).catch((error: unknown) => error);
      expect(failure).toMatchObject({
        code: "UNAVAILABLE",
        details: { retry: "outcome-unknown", node: "b" },
      });
      expect((failure as Error).message).toMatch(/node b went away .* the outcome is unknown/);
    });

    it("keeps waiting on a node that is slow but alive, and returns its answer", async () => {
      const { routed, calls } = dying({ slow: true });
      expect(await routed.invoke(ref, "setTarget", { target: 21 })).toEqual({ answered: "late" });
      expect(calls.filter((c) => c.endsWith("ping")).length).toBeGreaterThan(0);
    });
  });
});
