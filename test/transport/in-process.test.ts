import { describe, expect, it } from "vitest";
import { InProcessBus } from "../../cluster/transport/in-process.ts";
import { subjectMatches, validSubject } from "../../cluster/transport/subjects.ts";
import { TransportError, type TransportMessage } from "../../cluster/transport/transport.ts";

const bytes = (text: string) => new TextEncoder().encode(text);
const text = (data: Uint8Array) => new TextDecoder().decode(data);

describe("in-process transport", () => {
  it("matches subjects with NATS wildcards", () => {
    expect(subjectMatches("a.*.c", "a.b.c")).toBe(true);
    expect(subjectMatches("a.*.c", "a.b.d")).toBe(false);
    expect(subjectMatches("a.>", "a.b.c")).toBe(true);
    expect(subjectMatches("a.>", "a")).toBe(false);
    expect(subjectMatches("a.b", "a.b.c")).toBe(false);
    expect(validSubject("a..b", false)).toBe(false);
    expect(validSubject("a.*", false)).toBe(false);
    expect(validSubject("a.>.b", true)).toBe(false);
    expect(validSubject("a b", true)).toBe(false);
    expect(validSubject("a\u00a0b", true)).toBe(false);
    for (const bad of ["", ".", "a.", ".a", "a.b*", "a.>b", "*a.b"])
      expect(validSubject(bad, true)).toBe(false);
    for (const good of ["a", "a.b", "doppel.dev.thermostat.t-1.desired"])
      expect(validSubject(good, false)).toBe(true);
    for (const wild of ["*", ">", "a.*", "a.>", "a.*.c.>", "*.*"]) {
      expect(validSubject(wild, true)).toBe(true);
      expect(validSubject(wild, false)).toBe(false);
    }
  });

  it("delivers to every subscriber and to one member of a queue group", async () => {
    const bus = new InProcessBus();
    const a = bus.connect();
    const got: string[] = [];
    const done = new Promise<void>((resolve) => {
      let n = 0;
      const note = (who: string) => (m: TransportMessage) => {
        got.push(`${who}:${text(m.data)}`);
        if (++n === 2) resolve();
      };
      a.subscribe("x.*", note("plain"));
      a.subscribe("x.*", note("q1"), { queue: "q" });
      a.subscribe("x.*", note("q2"), { queue: "q" });
    });
    a.publish("x.y", bytes("hi"));
    await done;
    expect(got).toContain("plain:hi");
    expect(got.filter((g) => g.startsWith("q")).length).toBe(1);
  });

  it("answers requests, and fails fast without responders", async () => {
    const bus = new InProcessBus();
    const server = bus.connect();
    const client = bus.connect();
    server.subscribe("echo", (m) => server.respond(m, m.data));
    const reply = await client.request("echo", bytes("ping"), { timeoutMs: 1000 });
    expect(text(reply.data)).toBe("ping");
    await expect(client.request("nobody", bytes(""), { timeoutMs: 1000 })).rejects.toMatchObject({
      failure: "no-responders",
    });
    server.subscribe("silent", () => {});
    await expect(client.request("silent", bytes(""), { timeoutMs: 20 })).rejects.toBeInstanceOf(
      TransportError,
    );
  });

  it("stops delivering to a closed connection", async () => {
    const bus = new InProcessBus();
    const a = bus.connect();
    const b = bus.connect();
    a.subscribe("t", () => {});
    await a.close();
    await expect(b.request("t", bytes(""), { timeoutMs: 100 })).rejects.toMatchObject({
      failure: "no-responders",
    });
    expect(() => a.publish("t", bytes(""))).toThrow("closed");
  });

  it("knows whether a publish would reach anyone", async () => {
    const bus = new InProcessBus();
    const publisher = bus.connect();
    const listener = bus.connect();
    expect(publisher.reachesAnyone("doppel.dev.thermostat.t1.desired")).toBe(false);
    const sub = listener.subscribe("doppel.dev.*.t1.>", () => {});
    expect(publisher.reachesAnyone("doppel.dev.thermostat.t1.desired")).toBe(true);
    expect(publisher.reachesAnyone("doppel.dev.thermostat.t2.desired")).toBe(false);
    sub.unsubscribe();
    expect(publisher.reachesAnyone("doppel.dev.thermostat.t1.desired")).toBe(false);
    listener.subscribe(">", () => {});
    expect(publisher.reachesAnyone("doppel.dev.thermostat.t2.desired")).toBe(true);
    await listener.close();
    expect(publisher.reachesAnyone("doppel.dev.thermostat.t2.desired")).toBe(false);
  });
});
