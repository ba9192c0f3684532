/**
 * MurmurHash3 x86 32-bit: the hash that places virtual nodes and shards on the ring.
 *
 * Chosen over FNV-1a for the ring because its final avalanche mixes short, similar keys
 * (`node-1#0`, `node-1#1`, `17`) into well-spread 32-bit points; FNV-1a of such keys clusters in
 * the high bits. Not cryptographic: it only has to spread, and be the same on every node.
 */

const C1 = 0xcc9e2d51;
const C2 = 0x1b873593;
const encoder = new TextEncoder();

/** MurmurHash3 (x86, 32-bit) of the UTF-8 bytes of `text`, as an unsigned 32-bit integer. Never fails. */
export function murmur3(text: string, seed = 0): number {
  const bytes = encoder.encode(text);
  const blocks = bytes.length >>> 2;
  let h = seed >>> 0;
  for (let i = 0; i < blocks; i++) {
    const at = i << 2;
    let k = bytes[at]! | (bytes[at + 1]! << 8) | (bytes[at + 2]! << 16) | (bytes[at + 3]! << 24);
    k = Math.imul(k, C1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, C2);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  const tail = blocks << 2;
  const rest = bytes.length & 3;
  if (rest > 0) {
    // The 1–3 tail bytes, little-endian, as in the reference implementation.
    let k = 0;
    if (rest === 3) k ^= bytes[tail + 2]! << 16;
    if (rest >= 2) k ^= bytes[tail + 1]! << 8;
    k ^= bytes[tail]!;
    k = Math.imul(k, C1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, C2);
    h ^= k;
  }
  h ^= bytes.length;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
