import { Writable } from "node:stream";
import * as grpc from "@grpc/grpc-js";
import { ROOT_CONTEXT, trace } from "@opentelemetry/api";
import { DoppelNode, MemoryEventStore } from "doppel/node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../../runtime/observability/logger.ts";
import {
  extractContext,
  inSpanSync,
  installTracing,
  SpanKind,
  traces,
} from "../../runtime/observability/tracing.ts";
import { Thermostat } from "../../twins/thermostat.ts";

// A node with `tracing.enabled` and no exporter: nothing starts a trace, a caller's is continued.
// Installed before the node starts (tracing is process-wide; this file runs in its own worker).
installTracing();

const TRACE = "cccccccccccccccccccccccccccccccc";
const traceparent = `00-${TRACE}-00f067aa0ba902b7-01`;
const callerContext = () => extractContext((key) => (key === "traceparent" ? traceparent : undefined));

describe("tracing installed without an exporter", () => {
  it("gives a span only to work that continues a caller's trace", () => {
    expect(traces(ROOT_CONTEXT)).toBe(false);
    expect(traces(callerContext())).toBe(true);
    // A traceparent that is not valid starts nothing either.
    expect(traces(extractContext(() => "00-not-a-trace-01"))).toBe(false);
  });

  it("keeps a synchronous piece of work synchronous inside its span", async () => {
    let seen: string | undefined;
    const value = inSpanSync(
      "work",
      SpanKind.INTERNAL,
      {},
      () => {
        seen = trace.getActiveSpan()?.spanContext().traceId;
        return 42;
      },
      callerContext(),
    );
    expect(value).toBe(42); // the value itself, not a promise
    expect(seen).toBe(TRACE);
    const later = inSpanSync("work", SpanKind.INTERNAL, {}, async () => 7, callerContext());
    expect(later).toBeInstanceOf(Promise);
    await expect(later).resolves.toBe(7);
    expect(() =>
      inSpanSync(
        "work",
        SpanKind.INTERNAL,
        {},
        () => {
          throw new Error("boom");
        },
        callerContext(),
      ),
    ).toThrow("boom");
  });

  describe("on a node", () => {
    let node: DoppelNode;
    const lines: Record<string, unknown>[] = [];

    beforeAll(async () => {
      const sink = new Writable({
        write(chunk, _encoding, done) {
          for (const line of String(chunk).split("\n").filter(Boolean))
            lines.push(JSON.parse(line) as Record<string, unknown>);
          done();
        },
      });
      node = await DoppelNode.start(
        { nodeId: "untraced", store: { kind: "memory" }, grpc: { listen: "127.0.0.1:0" } },
        {
          twins: [Thermostat],
          store: new MemoryEventStore(),
          logger: createLogger({ level: "debug", nodeId: "untraced", destination: sink }),
        },
      );
    });

    afterAll(async () => {
      await node.stop();
    });

    it("applies untraced reports, and logs a traced caller's failure with its trace id and an untraced one's without", async () => {
      const result = await node.twins.report({ type: "thermostat", id: "t1" }, { temperature: 20 });
      expect(result.version).toBeGreaterThan(0);

      const { loadContract } = await import("../../runtime/grpc/proto.ts");
      const typed = new (loadContract().Client)(node.grpcAddress!, grpc.credentials.createInsecure());
      const getTwin = (metadata: grpc.Metadata) =>
        new Promise<grpc.ServiceError | null>((resolve) =>
          typed.GetTwin({ type: "thermostat", id: "bad id!" }, metadata, (error) => resolve(error)),
        );
      const traced = new grpc.Metadata();
      traced.set("traceparent", traceparent);
      expect((await getTwin(traced))?.code).toBe(grpc.status.INVALID_ARGUMENT);
      expect((await getTwin(new grpc.Metadata()))?.code).toBe(grpc.status.INVALID_ARGUMENT);
      typed.close();

      const failures = lines.filter(
        (line) => line["method"] === "GetTwin" && line["code"] === "INVALID_ARGUMENT",
      );
      expect(failures).toHaveLength(2);
      expect(failures.filter((line) => line["trace_id"] === TRACE)).toHaveLength(1);
      // The untraced call ran without a span: no trace id made up for it.
      expect(failures.filter((line) => line["trace_id"] === undefined)).toHaveLength(1);
    });
  });
});
