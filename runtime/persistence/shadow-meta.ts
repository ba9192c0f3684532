/**
 * The `shadow_meta` column of a snapshot (SQLite and Cassandra store it as the same JSON): the
 * device's high-water mark, the stamps of the latest reports applied (so a stamped report that was
 * overtaken can still be told from one already applied), and, per reported leaf, the time and the
 * stamp of the report that last set it; and the device commands queued for the device.
 */
import { isJsonObject, type JsonObject } from "../core/json.ts";
import type { QueuedCommand, TwinSnapshot } from "../core/records.ts";

type ShadowMeta = Pick<
  TwinSnapshot,
  "deviceSeq" | "deviceSeqs" | "deviceSeqFloor" | "reportedAt" | "reportedSeq" | "deviceCommands"
>;

/** The column's text for `snapshot`. */
export function encodeShadowMeta(snapshot: TwinSnapshot): string {
  const { deviceSeq, deviceSeqs, deviceSeqFloor, reportedAt, reportedSeq, deviceCommands } = snapshot;
  return JSON.stringify({ deviceSeq, deviceSeqs, deviceSeqFloor, reportedAt, reportedSeq, deviceCommands });
}

function isQueuedCommand(value: unknown): value is QueuedCommand {
  if (!isJsonObject(value)) return false;
  const { id, command, args, queuedAt, expiresAt, timeoutMs } = value;
  return (
    typeof id === "string" &&
    typeof command === "string" &&
    isJsonObject(args) &&
    typeof queuedAt === "number" &&
    typeof expiresAt === "number" &&
    typeof timeoutMs === "number"
  );
}

/** The snapshot fields in a parsed column (fields of another shape are ignored, as if absent). */
export function decodeShadowMeta(meta: JsonObject): ShadowMeta {
  const { deviceSeq, deviceSeqs, deviceSeqFloor, reportedAt, reportedSeq, deviceCommands } = meta;
  return {
    ...(typeof deviceSeq === "number" ? { deviceSeq } : {}),
    ...(typeof deviceSeqFloor === "number" ? { deviceSeqFloor } : {}),
    ...(Array.isArray(deviceSeqs) && deviceSeqs.every((s) => typeof s === "number")
      ? { deviceSeqs: deviceSeqs as number[] }
      : {}),
    ...(isJsonObject(reportedAt) ? { reportedAt } : {}),
    ...(isJsonObject(reportedSeq) ? { reportedSeq } : {}),
    ...(Array.isArray(deviceCommands) && deviceCommands.every(isQueuedCommand)
      ? { deviceCommands: deviceCommands as QueuedCommand[] }
      : {}),
  };
}
