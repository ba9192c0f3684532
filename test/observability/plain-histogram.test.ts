import { PrometheusExporter } from "@opentelemetry/exporter-prometheus";
import { MeterProvider } from "@opentelemetry/sdk-metrics";
import { describe, expect, it } from "vitest";
import { PlainHistogram } from "../../runtime/observability/plain-histogram.ts";

const BOUNDS = [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 5000];

/** The Prometheus text of the metric `name` as an exporter given `producers` (and `record` into the SDK) writes it. */
async function scrape(
  name: string,
  record: (provider: MeterProvider) => void,
  producers: PlainHistogram[] = [],
): Promise<string[]> {
  const exporter = new PrometheusExporter({ preventServerStart: true, metricProducers: producers });
  const provider = new MeterProvider({ readers: [exporter] });
  record(provider);
  const text = await new Promise<string>((resolve) => {
    const chunks: string[] = [];
    const response = {
      statusCode: 0,
      setHeader() {},
      end(chunk?: string) {
        if (chunk) chunks.push(chunk);
        resolve(chunks.join(""));
      },
    };
    exporter.getMetricsRequestHandler({} as never, response as never);
  });
  await provider.shutdown();
  return text.split("\n").filter((line) => line.includes(name));
}

describe("a plain-number histogram", () => {
  const values = [0.05, 0.1, 0.3, 1, 2, 7.5, 5000, 6000, 0.1000001, Number.NaN];

  it("is exported exactly as an OpenTelemetry histogram with the same buckets and values", async () => {
    const sdk = await scrape("turn_ms", (provider) => {
      const histogram = provider.getMeter("doppel").createHistogram("turn_ms", {
        description: "a turn",
        unit: "ms",
        advice: { explicitBucketBoundaries: BOUNDS },
      });
      for (const value of values) histogram.record(value);
    });
    const plain = new PlainHistogram({
      name: "turn_ms",
      description: "a turn",
      unit: "ms",
      boundaries: BOUNDS,
      scope: "doppel",
    });
    for (const value of values) plain.record(value);
    // The SDK needs one instrument of the scope for the scope to appear: a counter under another name.
    const ours = await scrape("turn_ms", (provider) => provider.getMeter("doppel").createCounter("other"), [
      plain,
    ]);
    expect(sdk.length).toBeGreaterThan(5);
    expect(ours).toEqual(sdk);
    expect(ours).toContain('turn_ms_bucket{otel_scope_name="doppel",le="0.1"} 2');
    expect(ours).toContain('turn_ms_bucket{otel_scope_name="doppel",le="+Inf"} 9');
  });

  it("exports nothing before its first value", async () => {
    const plain = new PlainHistogram({
      name: "idle_ms",
      description: "",
      unit: "ms",
      boundaries: BOUNDS,
      scope: "doppel",
    });
    expect(await scrape("idle_ms", () => {}, [plain])).toEqual([]);
  });
});
