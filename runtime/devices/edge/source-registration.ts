/**
 * How an edge asks the cloud to source one of its streams, instead of editing the cloud's streams
 * itself (docs/edge.md, docs/security.md: an edge's credentials carry no right to the cloud's
 * JetStream API).
 *
 * The edge node requests on `doppel.edge.<edge>.register` with `{ kind, stream }`: `thin`, its
 * forwarding stream (`DOPPEL_EDGE`) as a source of the cloud's ingress stream; `thick`, its log
 * stream (`DOPPEL_EDGE_LOG`) as a source of the cloud's edge logs. A cloud node (queue group
 * `doppel-edge-registrar`, replication/source-registrar.ts) adds or repairs that edge's durable
 * source and answers with the source's position: the last edge sequence the cloud stored, what
 * the thin edge trims up to. The edge is the subject's token, never the payload's: the hub's
 * per-edge permissions let an edge publish only on its own `doppel.edge.<edge>.>`, so it can ask
 * only for its own source (`$JS.<edge>.API`, delivering on its own `doppel.edge-source.<edge>…`).
 *
 * The thin edge asks on every tick: the answer is also its position (one STREAM.INFO in the cloud,
 * as reading the ingress stream's info itself cost before), and a source lost to a concurrent
 * update elsewhere is put back within a tick.
 */
import type { ExternalStream, StreamInfo, StreamSourceInfo } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { checkEdgeName } from "../../core/edge-name.ts";
import { DoppelError, InvalidArgument, type WireError } from "../../core/errors.ts";
import { edgeOfSource } from "./durable-source.ts";

/** What an edge asks to be sourced: its thin edge's forwarding stream, or its thick edge's log. */
export type SourceKind = "thin" | "thick";

export interface SourceRegistration {
  readonly kind: SourceKind;
  /** The edge's stream (in the edge's own JetStream domain) the cloud should source. */
  readonly stream: string;
}

/** The cloud's answer: where that edge's source stands. */
export interface SourcePosition {
  /** Whether the cloud added or repaired the source just now. */
  readonly changed: boolean;
  /** The last edge sequence the cloud's stream stored from this source (0: none yet). */
  readonly seq: number;
  /** The hub's error for this source, when it reports one. */
  readonly sourceError?: string;
}

/** JetStream stream names Doppel accepts for an edge's streams. */
const STREAM_NAME = /^[A-Za-z0-9_-]{1,64}$/;
const KINDS: readonly SourceKind[] = ["thin", "thick"];

/** Where the edge `edge` asks for its sources. */
export function sourceRegistrationSubject(edge: string): string {
  return `doppel.edge.${edge}.register`;
}

/** What the cloud's registrars subscribe to: every edge's registration subject. */
export const SOURCE_REGISTRATION_SUBJECTS = "doppel.edge.*.register";

/** The registrars' queue group: one cloud node answers each request. */
export const SOURCE_REGISTRAR_QUEUE = "doppel-edge-registrar";

/** The edge a registration subject names; `InvalidArgument` when it is not one. */
export function edgeOfRegistrationSubject(subject: string): string {
  const tokens = subject.split(".");
  const edge = tokens[2];
  if (tokens.length !== 4 || tokens[0] !== "doppel" || tokens[1] !== "edge" || tokens[3] !== "register")
    throw new InvalidArgument(
      `${subject} is not a source registration subject (doppel.edge.<edge>.register)`,
    );
  return checkEdgeName(edge ?? "", ` in ${subject}`);
}

/** Decodes and checks a registration request's payload: `{ kind: "thin" | "thick", stream }`, nothing else. */
export function parseSourceRegistration(data: Uint8Array): SourceRegistration {
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder().decode(data));
  } catch (error) {
    throw new InvalidArgument(`a source registration must be JSON: ${(error as Error).message}`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value))
    throw new InvalidArgument('a source registration must be an object { "kind", "stream" }');
  const fields = value as Record<string, unknown>;
  for (const key of Object.keys(fields)) {
    if (key !== "kind" && key !== "stream")
      throw new InvalidArgument(`a source registration has no field ${JSON.stringify(key)}`, { field: key });
  }
  const { kind, stream } = fields;
  if (typeof kind !== "string" || !(KINDS as readonly string[]).includes(kind))
    throw new InvalidArgument(`kind must be "thin" or "thick", not ${JSON.stringify(kind)}`, {
      field: "kind",
    });
  if (typeof stream !== "string" || !STREAM_NAME.test(stream))
    throw new InvalidArgument(
      `stream must be a stream name of 1-64 letters, digits, '_' or '-', not ${JSON.stringify(stream)}`,
      { field: "stream" },
    );
  return { kind: kind as SourceKind, stream };
}

/** A registrar's reply on the wire. */
export type RegistrationReply = { readonly ok: SourcePosition } | { readonly error: WireError };

/**
 * Asks the cloud to source `registration.stream` of `edge` and returns the source's position.
 * Throws the cloud's refusal as a {@link DoppelError} (it answered: the link is up), a reply that
 * is not one as `InvalidArgument` (it answered too; {@link parseRegistrationReply}), and the
 * request's own errors (no responders: the link is down or no cloud node runs; a timeout) as NATS
 * throws them.
 */
export async function requestSourceRegistration(
  nc: NatsConnection,
  edge: string,
  registration: SourceRegistration,
  timeoutMs: number,
): Promise<SourcePosition> {
  const reply = await nc.request(
    sourceRegistrationSubject(edge),
    new TextEncoder().encode(JSON.stringify(registration)),
    { timeout: timeoutMs },
  );
  const decoded = parseRegistrationReply(reply.data);
  if ("error" in decoded) throw DoppelError.fromWire(decoded.error);
  return decoded.ok;
}

/**
 * Decodes and checks a registrar's reply: `{ ok: { changed, seq, sourceError? } }` (`changed` a
 * boolean, `seq` a safe integer ≥ 0, `sourceError` a string when present) or `{ error: { code,
 * message, details? } }`; `InvalidArgument` naming what is wrong otherwise. The thin edge trims its
 * stream up to `seq`, so a reply that fails here must never be taken as a position (the edge
 * shows it as a source error and trims nothing). Fields it does not know are ignored.
 */
export function parseRegistrationReply(data: Uint8Array): RegistrationReply {
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder().decode(data));
  } catch (error) {
    throw new InvalidArgument(`the registrar's reply must be JSON: ${(error as Error).message}`);
  }
  if (!isRecord(value))
    throw new InvalidArgument('the registrar\'s reply must be an object { "ok" } or { "error" }');
  if ("error" in value) {
    const { error } = value;
    if (!isRecord(error) || typeof error["code"] !== "string" || typeof error["message"] !== "string")
      throw new InvalidArgument("the registrar's error reply must be { code, message } strings", {
        field: "error",
      });
    const details = error["details"];
    if (details !== undefined && !isRecord(details))
      throw new InvalidArgument("the registrar's error details must be an object", {
        field: "error.details",
      });
    return { error: error as unknown as WireError };
  }
  const { ok } = value;
  if (!isRecord(ok))
    throw new InvalidArgument("the registrar's reply has neither an ok object nor an error", { field: "ok" });
  const { changed, seq, sourceError } = ok;
  if (typeof changed !== "boolean")
    throw new InvalidArgument(
      `the registrar's ok.changed must be a boolean, not ${JSON.stringify(changed)}`,
      {
        field: "ok.changed",
      },
    );
  if (typeof seq !== "number" || !Number.isSafeInteger(seq) || seq < 0)
    throw new InvalidArgument(
      `the registrar's ok.seq must be a safe integer ≥ 0, not ${JSON.stringify(seq)}`,
      { field: "ok.seq" },
    );
  if (sourceError !== undefined && typeof sourceError !== "string")
    throw new InvalidArgument(
      `the registrar's ok.sourceError must be a string, not ${JSON.stringify(sourceError)}`,
      { field: "ok.sourceError" },
    );
  return { ok: { changed, seq, ...(sourceError !== undefined ? { sourceError } : {}) } };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * The position of `edge`'s source in a cloud stream's `info`: the last origin sequence it stored
 * (nats-server 2.11+ reports it as the source's `seq`), and its error; `undefined` when the stream
 * does not source that edge.
 */
export function sourcePositionOf(
  info: StreamInfo,
  edge: string,
): Omit<SourcePosition, "changed"> | undefined {
  // The info's sources carry `external` and `seq` on the wire, beyond nats.js's type.
  const sources = (info.sources ?? []) as (StreamSourceInfo & { external?: ExternalStream; seq?: number })[];
  const source = sources.find((s) => edgeOfSource(s) === edge);
  if (!source) return undefined;
  const error = source.error?.description;
  return { seq: source.seq ?? 0, ...(error ? { sourceError: error } : {}) };
}
