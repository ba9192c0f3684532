/** A small twin for the Cassandra runtime tests: a meter that adds numbers and takes reports. */
import { Twin, z } from "doppel";

export interface MeterState {
  readonly total: number;
  readonly adds: number;
}
export type MeterEvent = { readonly type: "added"; readonly by: number };

export class Meter extends Twin<MeterState, MeterEvent, { n?: number }> {
  static readonly type = "itmeter";
  static readonly reported = z.object({ n: z.number() }).partial();
  static readonly commands = { add: z.object({ by: z.number() }) };

  initialState(): MeterState {
    return { total: 0, adds: 0 };
  }

  apply(state: MeterState, event: MeterEvent): MeterState {
    return { total: state.total + event.by, adds: state.adds + 1 };
  }

  add({ by }: { by: number }) {
    this.emit({ type: "added", by });
    return { total: this.state.total };
  }
}
