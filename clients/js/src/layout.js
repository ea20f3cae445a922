// Sizes, alignments, niches and field offsets of archived types (rkyv 0.7, size_32).
//
// Archived structs derived by rkyv 0.7 carry no #[repr(C)], so rustc orders their
// fields: structLayout reproduces rustc's univariant / univariant_biased for what
// archived types can contain (the same rules as hardlight_core/_layout.py and
// shared/protocol/RKYV.md). Tuples, enum variants, ArchivedOption and
// ArchivedResult are laid out in declaration order (cLayout).

/** @typedef {{available: number, offset: number, size: number}} Niche */
/** @typedef {{size: number, align: number, niche: Niche | null}} Shape */

/** @returns {Shape} */
export function shape(size, align, niche = null) {
  return { size, align, niche };
}

export function alignUp(n, a) {
  return Math.ceil(n / a) * a;
}

/** A niche-less scalar aligned to its size (integers, floats, relative pointers). */
export function scalar(size) {
  return shape(size, size);
}

export const BOOL = shape(1, 1, { available: 254, offset: 0, size: 1 });
export const CHAR = shape(4, 4, { available: 2 ** 32 - 0x110000, offset: 0, size: 4 });
export const UNIT = shape(0, 1);

/** Bytes of the tag rkyv_derive picks for an enum of n variants. */
export function tagSize(n) {
  return n <= 255 ? 1 : 2;
}

const avail = (s) => (s.niche ? s.niche.available : 0);
const ctz = (x) => Math.log2(x & -x);
const log2 = (x) => Math.log2(x);

function place(fields, order, start, endBias) {
  const offsets = new Array(fields.length).fill(0);
  let off = start;
  let align = 1;
  let niche = null;
  let best = 0;
  for (const i of order) {
    const f = fields[i];
    off = alignUp(off, f.align);
    align = Math.max(align, f.align);
    offsets[i] = off;
    if (f.niche) {
      const av = f.niche.available;
      if (av > best || (endBias && av === best)) {
        best = av;
        niche = { available: av, offset: f.niche.offset + off, size: f.niche.size };
      }
    }
    off += f.size;
  }
  return { offsets, size: alignUp(off, align), align, niche };
}

/** Declaration-order (repr(C)) layout. */
export function cLayout(fields, start = 0, minAlign = 1) {
  const order = fields.map((_, i) => i);
  const p = place(fields, order, start, false);
  const align = Math.max(p.align, minAlign);
  let end = start;
  fields.forEach((f, i) => {
    end = Math.max(end, p.offsets[i] + f.size);
  });
  return { offsets: p.offsets, shape: shape(alignUp(end, align), align, p.niche) };
}

function biased(fields, endBias, maybeUnsized = false) {
  const n = fields.length;
  let order = fields.map((_, i) => i);
  // A tuple's last field might be unsized: rustc keeps it last and leaves it out of
  // the reordering and of the statistics that drive it.
  const m = maybeUnsized ? n - 1 : n;
  if (n > 1 && m > 0) {
    const head = fields.slice(0, m);
    const maxAlign = Math.max(...head.map((f) => f.align));
    const largest = Math.max(...head.map(avail));
    const logMax = log2(maxAlign);
    const group = (f) => {
      const g = ctz(Math.max(f.align, f.size));
      if (largest > 0) {
        if (!endBias) return Math.min(logMax, g);
        if (avail(f) === largest) return log2(f.align);
      }
      return g;
    };
    const key = (i) => {
      const f = fields[i];
      const av = avail(f);
      if (endBias) {
        const inner = f.niche ? -(f.size - f.niche.offset) - 1 : 0;
        return [-group(f), av, inner];
      }
      return [-group(f), -av, f.niche ? f.niche.offset : 0];
    };
    const keys = order.slice(0, m).map((i) => [key(i), i]);
    // Array.prototype.sort is stable: ties keep declaration order
    keys.sort((a, b) => a[0][0] - b[0][0] || a[0][1] - b[0][1] || a[0][2] - b[0][2]);
    order = keys.map((k) => k[1]).concat(order.slice(m));
  }
  const p = place(fields, order, 0, endBias);
  return { offsets: p.offsets, shape: shape(p.size, p.align, p.niche) };
}

/** rustc's default layout of a struct: field offsets (declaration order) and shape. */
export function structLayout(fields) {
  const first = biased(fields, false);
  const niche = first.shape.niche;
  if (niche && fields.length > 1) {
    const head = niche.offset;
    const tail = first.shape.size - head - niche.size;
    if (head !== 0 && tail > 0) {
      const alt = biased(fields, true);
      if (alt.shape.niche.offset > head && alt.shape.niche.offset > tail) return alt;
    }
  }
  return first;
}

/** rustc's layout of a native tuple: the last field stays last, no end bias. */
export function tupleLayout(fields) {
  return biased(fields, false, true);
}

/** A #[repr(u8/u16)] enum: tag size, per-variant field offsets, and shape. */
export function enumLayout(nVariants, variants) {
  const ts = tagSize(nVariants);
  let size = ts;
  let align = ts;
  const offsets = [];
  for (const fields of variants) {
    const v = cLayout(fields, ts, ts);
    offsets.push(v.offsets);
    size = Math.max(size, v.shape.size);
    align = Math.max(align, v.shape.align);
  }
  const space = 2 ** (8 * ts);
  const niche = nVariants < space ? { available: space - nVariants, offset: 0, size: ts } : null;
  return { tagSize: ts, offsets, shape: shape(alignUp(size, align), align, niche) };
}

/** [T; n]: the element's niche (first element) when non-empty. */
export function arrayShape(elem, n) {
  return shape(elem.size * n, elem.align, n > 0 ? elem.niche : null);
}
