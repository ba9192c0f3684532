import { networkInterfaces } from "node:os";
import { describe, expect, it } from "vitest";
import { formatHostPort, isHostPort, parseHostPort } from "../../runtime/core/host-port.ts";
import { DoppelClient } from "../../runtime/grpc/client.ts";
import { DoppelNode } from "../../runtime/node/node.ts";
import { compileConfig } from "../../runtime/node/options.ts";
import { MemoryEventStore } from "../../runtime/persistence/memory-store.ts";
import { Thermostat } from "../../twins/thermostat.ts";

describe("host:port addresses", () => {
  it("parses names, IPv4 and bracketed IPv6 hosts", () => {
    expect(parseHostPort("localhost:50051")).toEqual({ host: "localhost", port: 50051 });
    expect(parseHostPort("0.0.0.0:0")).toEqual({ host: "0.0.0.0", port: 0 });
    expect(parseHostPort("[::1]:50064")).toEqual({ host: "::1", port: 50064 });
    expect(parseHostPort("[::]:9464")).toEqual({ host: "::", port: 9464 });
    expect(parseHostPort("[fe80::1%lo]:1")).toEqual({ host: "fe80::1%lo", port: 1 });
    expect(formatHostPort("::1", 50064)).toBe("[::1]:50064");
    expect(formatHostPort("127.0.0.1", 1)).toBe("127.0.0.1:1");
  });

  it("refuses what is not an address, saying why", () => {
    expect(() => parseHostPort("::1:50064", "--listen")).toThrow(
      '--listen "::1:50064": an IPv6 host must be in brackets, e.g. [::1]:50051',
    );
    expect(() => parseHostPort("localhost")).toThrow("must be host:port (or [IPv6]:port)");
    expect(() => parseHostPort("[nope]:1")).toThrow('"nope" is not a host name or address');
    expect(() => parseHostPort("host:70000")).toThrow("port 70000 is above 65535");
    expect(() => parseHostPort("a b:1")).toThrow("is not a host name or address");
    expect(isHostPort("[::1]:")).toBe(false);
    expect(isHostPort(":50051")).toBe(false);
  });

  it("takes an IPv6 listen address in the configuration, and names the field of a bad one", () => {
    expect(compileConfig({ grpc: { listen: "[::1]:50064" } }).grpc.listen).toBe("[::1]:50064");
    expect(compileConfig({ metrics: { listen: "[::]:9464" } }).metrics.listen).toBe("[::]:9464");
    expect(() => compileConfig({ grpc: { listen: "::1:50064" } })).toThrow(
      "grpc.listen: an IPv6 host must be in brackets",
    );
  });

  const hasIpv6Loopback = Object.values(networkInterfaces())
    .flat()
    .some((address) => address?.family === "IPv6" && address.address === "::1");

  it.skipIf(!hasIpv6Loopback)("serves gRPC and metrics on [::1], and a client reaches it there", async () => {
    const node = await DoppelNode.start(
      { store: { kind: "memory" }, grpc: { listen: "[::1]:0" }, metrics: { listen: "[::1]:0" } },
      { twins: [Thermostat], store: new MemoryEventStore() },
    );
    try {
      expect(node.grpcAddress).toMatch(/^\[::1\]:\d+$/);
      expect(node.metricsAddress).toMatch(/^\[::1\]:\d+$/);
      const client = new DoppelClient(node.grpcAddress!);
      try {
        await client.reportState({ type: "thermostat", id: "v6" }, { temperature: 19 });
        expect((await client.getTwin({ type: "thermostat", id: "v6" })).reported).toEqual({
          temperature: 19,
        });
      } finally {
        client.close();
      }
      const metrics = await fetch(`http://${node.metricsAddress}/metrics`);
      expect(metrics.status).toBe(200);
    } finally {
      await node.stop();
    }
  });
});
