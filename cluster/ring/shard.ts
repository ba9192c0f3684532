/**
 * Shard function: which of the cluster's `S` shards a twin belongs to.
 *
 * `shard = fnv1a32(type + id) mod S`. This is the same function NATS uses for the subject
 * transform `{{partition(S, type-token, id-token)}}` (FNV-1a over the selected tokens, concatenated),
 * so the JetStream partition a device report lands in is the shard of its twin.
 */

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;
const encoder = new TextEncoder();

/** 32-bit FNV-1a hash of the UTF-8 bytes of `text`. */
export function fnv1a32(text: string): number {
  let hash = FNV_OFFSET;
  for (const byte of encoder.encode(text)) {
    hash ^= byte;
    hash = Math.imul(hash, FNV_PRIME);
  }
  return hash >>> 0;
}

/** The shard (0 ≤ shard < shardCount) of twin `type/id`. */
export function shardOf(type: string, id: string, shardCount: number): number {
  return fnv1a32(type + id) % shardCount;
}
