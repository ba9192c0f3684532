/**
 * Whether a batch in the cloud's `DOPPEL_EDGE_LOGS` may speak for the edge it names (docs/edge.md,
 * "Trust"). An edge controls its own nats-server, its log stream's subjects and what its source
 * consumer delivers, so neither the batch's `edge` field nor its subject
 * (`doppel.edge-log.<edge>.<type>.<id>`) is proof of where it came from. What the edge cannot write
 * is the `Nats-Stream-Source` header: the hub removes any such header a sourced message carries and
 * stamps its own, whose first token is the source's index name, `<stream>:<hash of the source's
 * external API prefix>[:C=<hash of its consumer>]`. The API prefix of edge X's source is
 * `$JS.X.API`, so the hash says which edge's source the hub took the message from.
 *
 * A batch is accepted only when all three agree: the edge its `edge` field names, the edge of its
 * subject, and the edge whose source the hub stamped. Anything else is *forged*: terminated,
 * counted and logged, never applied. This holds as long as no edge can make the hub source
 * another edge's domain (its leaf credentials must not let it answer `$JS.<other>.API`, see
 * docs/security.md).
 */
import { createHash } from "node:crypto";
import { domainApi } from "../devices/edge/durable-source.ts";
import { edgeOfLogSubject } from "./replicated-batch.ts";

/** The header the hub stamps on every message it sources. */
export const STREAM_SOURCE_HEADER = "Nats-Stream-Source";

const DIGITS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/**
 * nats-server's short hash of a name (`getHash`: the first 8 bytes of its SHA-256, each as one
 * base-62 digit of its value mod 62), as it appears in a source's index name.
 */
export function natsNameHash(name: string): string {
  const digest = createHash("sha256").update(name).digest();
  let hash = "";
  for (let i = 0; i < 8; i++) hash += DIGITS[digest[i]! % DIGITS.length];
  return hash;
}

/** The hash of edge `edge`'s source API prefix (`$JS.<edge>.API`) in a `Nats-Stream-Source` header. */
export function edgeSourceHash(edge: string): string {
  return natsNameHash(domainApi(edge));
}

/**
 * The API hash of the source a `Nats-Stream-Source` header names, or `undefined` when there is no
 * header or its source was not external (a message not sourced from an edge).
 */
export function sourceHashOf(header: string | undefined): string | undefined {
  const indexName = header?.split(" ")[0];
  const hash = indexName?.split(":")[1];
  return hash && !hash.startsWith("C=") ? hash : undefined;
}

/** Why a batch was refused as forged; `undefined` when its origin checks out. */
export interface Forgery {
  readonly reason: string;
  /** The edge the batch's `edge` field names. */
  readonly named: string;
  /** The edge its subject names, if any. */
  readonly subjectEdge: string | undefined;
}

/**
 * Checks a batch's origin (see the module comment): `named` is its `edge` field, `subject` its
 * subject in the cloud's stream, `sourceHeader` its `Nats-Stream-Source` header, `through` the
 * name of the edge whose source has that hash (for the message), if known.
 */
export function forgery(
  named: string,
  subject: string,
  sourceHeader: string | undefined,
  through: string | undefined,
): Forgery | undefined {
  const subjectEdge = edgeOfLogSubject(subject);
  const refuse = (reason: string): Forgery => ({ reason, named, subjectEdge });
  if (subjectEdge !== named)
    return refuse(
      `the batch names edge ${named} but came on ${subjectEdge ? `edge ${subjectEdge}'s` : "no edge's"} subject ${subject}`,
    );
  const hash = sourceHashOf(sourceHeader);
  if (hash === undefined)
    return refuse(
      `the batch of edge ${named} was not sourced from an edge's log (no ${STREAM_SOURCE_HEADER} of an edge)`,
    );
  if (hash !== edgeSourceHash(named))
    return refuse(
      `the batch of edge ${named} came through the source of ${through ? `edge ${through}` : `another edge (hash ${hash})`}`,
    );
  return undefined;
}
