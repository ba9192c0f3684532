import { Writable } from "node:stream";
import * as grpc from "@grpc/grpc-js";
import { InMemorySpanExporter } from "@opentelemetry/sdk-trace-base";
import { DoppelClient } from "doppel/client";
import { DoppelNode, MemoryEventStore } from "doppel/node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../../runtime/observability/logger.ts";
import { installTracing } from "../../runtime/observability/tracing.ts";
import { Pump } from "../../twins/pump.ts";
import { Thermostat } from "../../twins/thermostat.ts";

// Installed before any node starts in this worker, so the node's spans land here.
const spans = new InMemorySpanExporter();
installTracing(spans);

const TRACE = "4bf92f3577b34da6a3ce929d0e0e4736";
const traceparent = (trace: string) => `00-${trace}-00f067aa0ba902b7-01`;

describe("observability", () => {
  let node: DoppelNode;
  let client: DoppelClient;
  const lines: string[] = [];

  beforeAll(async () => {
    const sink = new Writable({
      write(chunk, _encoding, done) {
        lines.push(...String(chunk).split("\n").filter(Boolean));
        done();
      },
    });
    node = await DoppelNode.start(
      {
        nodeId: "observed",
        store: { kind: "memory" },
        grpc: { listen: "127.0.0.1:0" },
        metrics: { listen: "127.0.0.1:0" },
      },
      {
        twins: [Thermostat, Pump],
        store: new MemoryEventStore(),
        logger: createLogger({ level: "debug", nodeId: "observed", destination: sink }),
      },
    );
    client = new DoppelClient(node.grpcAddress!);
  });

  afterAll(async () => {
    client.close();
    await node.stop();
  });

  it("continues a caller's trace from gRPC metadata through the turn and the write", async () => {
    const raw = new grpc.Client(node.grpcAddress!, grpc.credentials.createInsecure());
    const metadata = new grpc.Metadata();
    metadata.set("traceparent", traceparent(TRACE));
    const { loadContract } = await import("../../runtime/grpc/proto.ts");
    const { Client } = loadContract();
    const typed = new Client(node.grpcAddress!, grpc.credentials.createInsecure());
    await new Promise<void>((resolve, reject) =>
      typed.reportState(
        {
          type: "thermostat",
          id: "traced",
          patch: { fields: { temperature: { numberValue: 18 } } },
          messageId: "",
        },
        metadata,
        (error: grpc.ServiceError | null) => (error ? reject(error) : resolve()),
      ),
    );
    typed.close();
    raw.close();
    const mine = spans.getFinishedSpans().filter((s) => s.spanContext().traceId === TRACE);
    const names = mine.map((s) => s.name);
    expect(names).toContain("rpc TwinService/ReportState");
    expect(names).toContain("turn reported");
    const turn = mine.find((s) => s.name === "turn reported")!;
    expect(turn.attributes["doppel.twin"]).toBe("thermostat/traced");
  });

  it("continues a device's trace from message headers through ingress and the turn", async () => {
    const transport = node.bus.connect();
    const headers = new Map([["traceparent", traceparent("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")]]);
    await transport.request(
      "doppel.dev.thermostat.dev-traced.reported",
      new TextEncoder().encode('{"temperature":21}'),
      {
        timeoutMs: 5000,
        headers,
      },
    );
    await transport.close();
    const mine = spans
      .getFinishedSpans()
      .filter((s) => s.spanContext().traceId === "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    expect(mine.map((s) => s.name)).toEqual(expect.arrayContaining(["ingress reported", "turn reported"]));
  });

  it("writes the trace id on log lines of traced work", async () => {
    const raw = new grpc.Client(node.grpcAddress!, grpc.credentials.createInsecure());
    raw.close();
    const metadata = new grpc.Metadata();
    metadata.set("traceparent", traceparent("bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"));
    const { loadContract } = await import("../../runtime/grpc/proto.ts");
    const typed = new (loadContract().Client)(node.grpcAddress!, grpc.credentials.createInsecure());
    // A failing call is logged (at debug) inside its span.
    await new Promise<void>((resolve) =>
      typed.getTwin({ type: "thermostat", id: "a.b" }, metadata, () => resolve()),
    );
    typed.close();
    const logged = lines.map((line) => JSON.parse(line) as Record<string, unknown>);
    const traced = logged.find((line) => line["trace_id"] === "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb");
    expect(traced).toMatchObject({ node: "observed", method: "GetTwin", code: "INVALID_ARGUMENT" });
  });

  it("exposes Prometheus metrics: turns, persist latency, resident twins, rejected inputs", async () => {
    await client.invoke({ type: "thermostat", id: "m1" }, "setTarget", { celsius: 22 });
    await expect(
      client.invoke({ type: "thermostat", id: "m1" }, "setTarget", { celsius: 99 }),
    ).rejects.toThrow();
    const text = await (await fetch(`http://${node.metricsAddress}/metrics`)).text();
    expect(text).toMatch(/doppel_turns_total\{[^}]*kind="command"[^}]*outcome="ok"[^}]*\} [1-9]/);
    expect(text).toMatch(/doppel_persist_duration_ms_count\{[^}]*\} [1-9]/);
    expect(text).toMatch(/doppel_turn_duration_ms_count\{[^}]*\} [1-9]/);
    expect(text).toMatch(/doppel_turn_duration_ms_bucket\{[^}]*le="\+Inf"[^}]*\} [1-9]/);
    expect(text).toMatch(/doppel_resident_twins\{[^}]*\} [1-9]/);
    expect(text).toMatch(/doppel_rejected_inputs_total\{[^}]*source="grpc"[^}]*\} [1-9]/);
    expect(text).toMatch(/doppel_activations_total\{[^}]*\} [1-9]/);
    expect(text).toContain("doppel_shards_owned");
  });

  it("counts device commands by outcome: an offline pump's command is queued", async () => {
    const { result } = await client.invoke({ type: "pump", id: "m2" }, "calibrate", { offsetBar: 0.1 });
    expect(result).toMatchObject({ status: "queued" });
    const text = await (await fetch(`http://${node.metricsAddress}/metrics`)).text();
    expect(text).toMatch(/doppel_device_commands_total\{[^}]*outcome="offline"[^}]*\} 1\b/);
    expect(text).toMatch(/doppel_device_commands_total\{[^}]*outcome="queued"[^}]*\} 1\b/);
    expect(text).toMatch(/doppel_device_commands_total\{[^}]*outcome="delivered"[^}]*\} 0\b/);
  });
});
