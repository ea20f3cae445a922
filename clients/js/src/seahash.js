// SeaHash (crate seahash 4.1, the streaming SeaHasher) and rkyv 0.7's
// compress-hash-displace index (collections/hash_index), as hardlight_core's
// _seahash.py and _hashindex.py. Keys are given as the bytes Rust's Hash impls
// feed the hasher; the streaming hasher gives the same result however the input
// is split, so hashing a key is hashing the concatenation of those bytes.

const M = (1n << 64n) - 1n;
const P = 0x6eed0e9da4d94a4fn;

/** The seeds rkyv 0.7's ArchivedHashIndex passes to SeaHasher::with_seeds. */
export const RKYV_SEEDS = [
  0x08576fb6170b5f5fn,
  0x587775eeb84a7e46n,
  0xac701115428ee569n,
  0x910feb91b92bb1cdn,
];

function diffuse(x) {
  x = (x * P) & M;
  x ^= (x >> 32n) >> (x >> 60n);
  return (x * P) & M;
}

/** SeaHash of bytes (a BigInt below 2^64). */
export function seahash(data, seeds = RKYV_SEEDS) {
  let [a, b, c, d] = seeds;
  const n = data.length;
  const full = n & ~7;
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  for (let i = 0; i < full; i += 8) {
    const w = dv.getBigUint64(i, true);
    let x = ((a ^ w) * P) & M;
    x ^= (x >> 32n) >> (x >> 60n);
    [a, b, c, d] = [b, c, d, (x * P) & M];
  }
  if (n !== full) {
    let tail = 0n;
    for (let i = n - 1; i >= full; i--) tail = (tail << 8n) | BigInt(data[i]);
    a = diffuse(a ^ tail);
  }
  return diffuse(a ^ b ^ c ^ d ^ BigInt(n));
}

export const EMPTY = 0xffffffff;
export const SEED_BASE = 0x80000000;

function withSeed(seed, key) {
  const out = new Uint8Array(4 + key.length);
  new DataView(out.buffer).setUint32(0, seed, true);
  out.set(key, 4);
  return out;
}

const mod = (h, n) => Number(h % BigInt(n));

/**
 * Build the index for distinct keys (their hash feeds): the displacement array and,
 * for each slot, the position in `keys` of the key stored there.
 */
export function buildIndex(keys) {
  const n = keys.length;
  if (n === 0) return { displace: [], order: [] };
  const buckets = Array.from({ length: n }, () => []);
  keys.forEach((k, i) => buckets[mod(seahash(k), n)].push(i));
  // largest buckets first, then by bucket number; keys in a bucket keep their order
  const bySize = [];
  for (let b = 0; b < n; b++) if (buckets[b].length) bySize.push(b);
  bySize.sort((x, y) => buckets[y].length - buckets[x].length || x - y);
  const occupied = new Array(n).fill(false);
  const order = new Array(n).fill(-1);
  const displace = new Array(n).fill(EMPTY);
  let firstEmpty = 0;
  for (const b of bySize) {
    const members = buckets[b];
    if (members.length > 1) {
      let seed = SEED_BASE;
      let assigned;
      for (;;) {
        assigned = [];
        let ok = true;
        for (const i of members) {
          const s = mod(seahash(withSeed(seed, keys[i])), n);
          if (occupied[s] || assigned.includes(s)) {
            ok = false;
            break;
          }
          assigned.push(s);
        }
        if (ok) break;
        seed += 1;
        if (seed > 0xffffffff) throw new Error("no displacement seed fits this bucket");
      }
      members.forEach((i, j) => {
        occupied[assigned[j]] = true;
        order[assigned[j]] = i;
      });
      displace[b] = seed;
    } else {
      while (occupied[firstEmpty]) firstEmpty += 1;
      occupied[firstEmpty] = true;
      order[firstEmpty] = members[0];
      displace[b] = firstEmpty;
      firstEmpty += 1;
    }
  }
  return { displace, order };
}

/** The slot of `key` as rkyv's ArchivedHashIndex::index computes it, or null. */
export function lookup(displace, key) {
  const n = displace.length;
  if (n === 0) return null;
  const d = displace[mod(seahash(key), n)];
  if (d === EMPTY) return null;
  if (d < SEED_BASE) return d;
  return mod(seahash(withSeed(d, key)), n);
}
