/**
 * A histogram kept as plain numbers (bucket counts, sum, min, max) for values recorded on the hot
 * path (one per turn): a record is a bucket search and a few additions, without the OpenTelemetry
 * instrument's per-record attributes object, attribute hashing and timestamp. The metrics reader
 * takes it at scrape time as a `MetricProducer`, so it is exported exactly as an OpenTelemetry
 * histogram with the same explicit buckets would be (cumulative, no attributes).
 */
import { type HrTime, ValueType } from "@opentelemetry/api";
import { hrTime } from "@opentelemetry/core";
import { emptyResource } from "@opentelemetry/resources";
import {
  AggregationTemporality,
  type CollectionResult,
  DataPointType,
  type MetricProducer,
} from "@opentelemetry/sdk-metrics";

export interface PlainHistogramOptions {
  readonly name: string;
  readonly description: string;
  readonly unit: string;
  /** Upper bounds of the buckets, ascending (a value equal to a bound falls in its bucket). */
  readonly boundaries: readonly number[];
  /** The instrumentation scope it is exported under (the node's meter name). */
  readonly scope: string;
}

export class PlainHistogram implements MetricProducer {
  readonly #options: PlainHistogramOptions;
  /** `#counts[i]`: values in (boundaries[i-1], boundaries[i]]; the last, values above every bound. */
  readonly #counts: number[];
  #count = 0;
  #sum = 0;
  #min = Number.POSITIVE_INFINITY;
  #max = Number.NEGATIVE_INFINITY;
  readonly #start: HrTime = hrTime();

  constructor(options: PlainHistogramOptions) {
    this.#options = options;
    this.#counts = new Array<number>(options.boundaries.length + 1).fill(0);
  }

  /** Adds one value. A value that is not a finite number is ignored (as the OpenTelemetry histogram does). */
  record(value: number): void {
    if (!Number.isFinite(value)) return;
    const bounds = this.#options.boundaries;
    let i = 0;
    while (i < bounds.length && value > bounds[i]!) i++;
    this.#counts[i]!++;
    this.#count++;
    this.#sum += value;
    if (value < this.#min) this.#min = value;
    if (value > this.#max) this.#max = value;
  }

  /** Nothing until the first value (as an OpenTelemetry histogram has no data point before its first record). */
  async collect(): Promise<CollectionResult> {
    const { name, description, unit, boundaries, scope } = this.#options;
    if (this.#count === 0)
      return { resourceMetrics: { resource: emptyResource(), scopeMetrics: [] }, errors: [] };
    return {
      resourceMetrics: {
        resource: emptyResource(),
        scopeMetrics: [
          {
            scope: { name: scope },
            metrics: [
              {
                descriptor: { name, description, unit, valueType: ValueType.DOUBLE },
                aggregationTemporality: AggregationTemporality.CUMULATIVE,
                dataPointType: DataPointType.HISTOGRAM,
                dataPoints: [
                  {
                    startTime: this.#start,
                    endTime: hrTime(),
                    attributes: {},
                    value: {
                      buckets: { boundaries: [...boundaries], counts: [...this.#counts] },
                      count: this.#count,
                      sum: this.#sum,
                      min: this.#min,
                      max: this.#max,
                    },
                  },
                ],
              },
            ],
          },
        ],
      },
      errors: [],
    };
  }
}
