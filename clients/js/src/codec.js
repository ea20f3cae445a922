// A byte-exact rkyv 0.7 codec (size_32, little-endian) driven by schema type notation.
//
// `compile(type, types)` turns a type (the notation of the rkyv vector files and of
// `python -m hardlight schema`, see docs/browser.md) into a Codec with encode(value)
// and decode(bytes). Encoding follows rkyv::to_bytes: out-of-line data is appended
// depth-first in field order before the object that points at it, and the root ends
// the buffer. Decoding follows rkyv::from_bytes with bytecheck: every relative pointer
// is bounds- and alignment-checked and must land inside the current subtree range
// [lo, hi), which narrows while an out-of-line object's children are checked and then
// moves past it, so no byte can be claimed twice (as hardlight_core/_codec.py does).
//
// JavaScript values: u8..u32, i8..i32, usize, isize, f32, f64 -> number;
// u64, i64, u128, i128 -> bigint (numbers that are safe integers are accepted when
// encoding); bool -> boolean; char -> a one-code-point string; String -> string;
// Vec<u8> -> Uint8Array; () -> null; Vec<T>, tuples, [T; N] -> arrays; Option<T> ->
// null or the value ({Some: value} when the value itself may be null: Option<Option<T>>,
// Option<()>); Box<T> -> the value; Result<T, E> -> {Ok: v} or {Err: e};
// HashMap<K, V> -> Map; structs -> plain objects by field name; unit-only enums -> the
// variant's name; other enums -> {Variant: payload} (payload: an object of fields, an
// array for tuple variants of the vector notation, null for unit variants).

import {
  BOOL,
  CHAR,
  UNIT,
  arrayShape,
  cLayout,
  enumLayout,
  scalar,
  shape,
  structLayout,
  tupleLayout,
} from "./layout.js";
import { DecodeError, EncodeError } from "./errors.js";
import { SEED_BASE, buildIndex, lookup } from "./seahash.js";

/** A vector of zero-sized elements costs no bytes: cap what hostile input can claim. */
export const MAX_ZST_ELEMENTS = 1 << 20;

const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder("utf-8", { fatal: true });
const M64 = (1n << 64n) - 1n;

const kind = (v) => {
  if (v === null) return "null";
  if (Array.isArray(v)) return "array";
  if (v instanceof Uint8Array) return "Uint8Array";
  if (v instanceof Map) return "Map";
  return typeof v;
};

const show = (v) => {
  try {
    const s = typeof v === "bigint" ? `${v}n` : JSON.stringify(v);
    return s === undefined ? String(v) : s.length > 60 ? s.slice(0, 57) + "..." : s;
  } catch {
    return String(v);
  }
};

// ---------------------------------------------------------------- buffers

class Writer {
  constructor() {
    this.buf = new Uint8Array(256);
    this.dv = new DataView(this.buf.buffer);
    this.len = 0;
  }

  ensure(n) {
    const need = this.len + n;
    if (need <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < need) size *= 2;
    const buf = new Uint8Array(size);
    buf.set(this.buf.subarray(0, this.len));
    this.buf = buf;
    this.dv = new DataView(buf.buffer);
  }

  /** Reserve n zero bytes; returns their position. */
  reserve(n) {
    this.ensure(n);
    const pos = this.len;
    this.len += n;
    return pos;
  }

  pad(align) {
    const rem = this.len % align;
    if (rem) this.reserve(align - rem);
  }

  append(bytes) {
    this.ensure(bytes.length);
    this.buf.set(bytes, this.len);
    const pos = this.len;
    this.len += bytes.length;
    return pos;
  }

  bytes() {
    return this.buf.slice(0, this.len);
  }
}

/** Decoding state: the buffer and rkyv's current subtree range [lo, hi). */
class Reader {
  constructor(data) {
    this.data = data;
    this.dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
    this.n = data.length;
    this.lo = 0;
    this.hi = this.n;
  }

  /** Check a relative pointer at `base` to `size` bytes; returns the target. */
  ptr(base, off, size, align, what) {
    const t = base + off;
    const n = this.n;
    if (t < 0 || t > n) {
      throw new DecodeError(
        `${what}: relative pointer at offset ${base} targets ${t}, outside the buffer (length ${n})`,
      );
    }
    if (t % align) {
      throw new DecodeError(
        `${what}: relative pointer at offset ${base} targets ${t}, not aligned to ${align}`,
      );
    }
    if (n - t < size) {
      throw new DecodeError(
        `${what}: ${size} bytes at offset ${t} (pointer at ${base}) overrun the buffer (length ${n})`,
      );
    }
    const { lo, hi } = this;
    if (size === 0) {
      if (t < lo || t > hi) {
        throw new DecodeError(
          `${what}: pointer at offset ${base} targets ${t}, outside the unclaimed range ${lo}..${hi}`,
        );
      }
    } else if (t < lo || t >= hi || hi - t < size) {
      throw new DecodeError(
        `${what}: ${size} bytes at offset ${t} (pointer at ${base}) are outside the unclaimed ` +
          `range ${lo}..${hi} (claimed twice or out of order)`,
      );
    }
    return t;
  }
}

function concat(parts) {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function u64le(n) {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(n), true);
  return b;
}

// ---------------------------------------------------------------- nodes

class Node {
  constructor(name) {
    this.name = name;
    this.finished = false;
    this.hasDeps = false;
    this.hashable = false;
  }

  setShape(s) {
    this.shape = s;
    this.size = s.size;
    this.align = s.align;
    this.finished = true;
  }

  /** Write the out-of-line data of v; returns what write() needs. */
  deps(_v, _w) {
    return undefined;
  }

  /** Write the archived object of v (size bytes, already reserved) at pos. */
  write(_w, _pos, _v, _r) {
    throw new Error("abstract");
  }

  /** Validate and read the archived object at pos. */
  dec(_d, _pos) {
    throw new Error("abstract");
  }

  /**
   * Push the bytes Rust's Hash feeds a hasher for v (map keys). rkyv builds a map's
   * index from the unarchived keys and validates it by hashing the archived keys
   * (archived = true): they differ where the archived type does (usize hashes 8
   * bytes, its archived u32 4), so rkyv rejects its own maps with usize keys.
   */
  feed(_v, _parts, _archived = false) {
    throw new TypeError(`${this.name} cannot be a HashMap key`);
  }
}

class IntNode extends Node {
  constructor(name, bits, signed) {
    super(name);
    this.bits = bits;
    this.signed = signed;
    this.big = bits > 32;
    this.hashable = true;
    // Rust hashes usize/isize as 8 bytes even though size_32 archives 4.
    this.hashWidth = name === "usize" || name === "isize" ? 8 : bits / 8;
    if (this.big) {
      this.lo = signed ? -(1n << BigInt(bits - 1)) : 0n;
      this.hi = signed ? (1n << BigInt(bits - 1)) - 1n : (1n << BigInt(bits)) - 1n;
    } else {
      this.lo = signed ? -(2 ** (bits - 1)) : 0;
      this.hi = signed ? 2 ** (bits - 1) - 1 : 2 ** bits - 1;
    }
    this.setShape(scalar(bits / 8));
  }

  check(v) {
    if (this.big) {
      let x;
      if (typeof v === "bigint") x = v;
      else if (typeof v === "number" && Number.isSafeInteger(v)) x = BigInt(v);
      else throw new EncodeError(`${this.name}: expected a bigint, got ${kind(v)} ${show(v)}`);
      if (x < this.lo || x > this.hi) {
        throw new EncodeError(`${this.name}: ${x} is out of range ${this.lo}..=${this.hi}`);
      }
      return x;
    }
    let x = v;
    if (typeof v === "bigint") x = Number(v);
    else if (typeof v !== "number" || !Number.isInteger(v)) {
      throw new EncodeError(`${this.name}: expected an integer, got ${kind(v)} ${show(v)}`);
    }
    if (x < this.lo || x > this.hi) {
      throw new EncodeError(`${this.name}: ${v} is out of range ${this.lo}..=${this.hi}`);
    }
    return x;
  }

  write(w, pos, v) {
    const x = this.check(v);
    const dv = w.dv;
    switch (this.bits) {
      case 8:
        if (this.signed) dv.setInt8(pos, x);
        else dv.setUint8(pos, x);
        break;
      case 16:
        if (this.signed) dv.setInt16(pos, x, true);
        else dv.setUint16(pos, x, true);
        break;
      case 32:
        if (this.signed) dv.setInt32(pos, x, true);
        else dv.setUint32(pos, x, true);
        break;
      case 64:
        dv.setBigUint64(pos, BigInt.asUintN(64, x), true);
        break;
      default: {
        const u = BigInt.asUintN(128, x);
        dv.setBigUint64(pos, u & M64, true);
        dv.setBigUint64(pos + 8, u >> 64n, true);
      }
    }
  }

  dec(d, pos) {
    const dv = d.dv;
    switch (this.bits) {
      case 8:
        return this.signed ? dv.getInt8(pos) : dv.getUint8(pos);
      case 16:
        return this.signed ? dv.getInt16(pos, true) : dv.getUint16(pos, true);
      case 32:
        return this.signed ? dv.getInt32(pos, true) : dv.getUint32(pos, true);
      case 64:
        return this.signed ? dv.getBigInt64(pos, true) : dv.getBigUint64(pos, true);
      default: {
        const u = dv.getBigUint64(pos, true) | (dv.getBigUint64(pos + 8, true) << 64n);
        return this.signed ? BigInt.asIntN(128, u) : u;
      }
    }
  }

  feed(v, parts, archived = false) {
    const width = archived ? this.size : this.hashWidth;
    const x = BigInt.asUintN(width * 8, BigInt(this.check(v)));
    const b = new Uint8Array(width);
    for (let i = 0; i < width; i++) b[i] = Number((x >> BigInt(8 * i)) & 0xffn);
    parts.push(b);
  }
}

class FloatNode extends Node {
  constructor(name, bits) {
    super(name);
    this.bits = bits;
    this.setShape(scalar(bits / 8));
  }

  write(w, pos, v) {
    if (typeof v !== "number") {
      throw new EncodeError(`${this.name}: expected a number, got ${kind(v)} ${show(v)}`);
    }
    if (this.bits === 32) {
      if (Number.isFinite(v) && !Number.isFinite(Math.fround(v))) {
        throw new EncodeError(`f32: ${v} is out of range`);
      }
      w.dv.setFloat32(pos, v, true);
    } else {
      w.dv.setFloat64(pos, v, true);
    }
  }

  dec(d, pos) {
    return this.bits === 32 ? d.dv.getFloat32(pos, true) : d.dv.getFloat64(pos, true);
  }
}

class BoolNode extends Node {
  constructor() {
    super("bool");
    this.hashable = true;
    this.setShape(BOOL);
  }

  check(v) {
    if (v !== true && v !== false) {
      throw new EncodeError(`bool: expected a boolean, got ${kind(v)} ${show(v)}`);
    }
    return v;
  }

  write(w, pos, v) {
    w.buf[pos] = this.check(v) ? 1 : 0;
  }

  dec(d, pos) {
    const b = d.data[pos];
    if (b === 0) return false;
    if (b === 1) return true;
    throw new DecodeError(`bool at offset ${pos} is 0x${b.toString(16).padStart(2, "0")}, not 0 or 1`);
  }

  feed(v, parts) {
    parts.push(Uint8Array.of(this.check(v) ? 1 : 0));
  }
}

function charCode(v) {
  if (typeof v !== "string" || v.length === 0 || v.length > 2) {
    throw new EncodeError(`char: expected a one-character string, got ${kind(v)} ${show(v)}`);
  }
  const c = v.codePointAt(0);
  if ((c > 0xffff ? 2 : 1) !== v.length) {
    throw new EncodeError(`char: expected a one-character string, got ${show(v)}`);
  }
  if (c >= 0xd800 && c <= 0xdfff) {
    throw new EncodeError(`char: ${show(v)} is a surrogate, not a Unicode scalar value`);
  }
  return c;
}

class CharNode extends Node {
  constructor() {
    super("char");
    this.hashable = true;
    this.setShape(CHAR);
  }

  write(w, pos, v) {
    w.dv.setUint32(pos, charCode(v), true);
  }

  dec(d, pos) {
    const c = d.dv.getUint32(pos, true);
    if (c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff)) {
      throw new DecodeError(`char at offset ${pos} is 0x${c.toString(16)}, not a Unicode scalar value`);
    }
    return String.fromCodePoint(c);
  }

  feed(v, parts) {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, charCode(v), true);
    parts.push(b);
  }
}

class UnitNode extends Node {
  constructor(name = "()") {
    super(name);
    this.hashable = true;
    this.setShape(UNIT);
  }

  write(_w, _pos, v) {
    if (v !== null && v !== undefined) {
      throw new EncodeError(`(): expected null, got ${kind(v)} ${show(v)}`);
    }
  }

  dec() {
    return null;
  }

  feed() {}
}

const WELL_FORMED = /^(?:[^\ud800-\udfff]|[\ud800-\udbff][\udc00-\udfff])*$/;

function utf8(v) {
  if (typeof v !== "string") {
    throw new EncodeError(`String: expected a string, got ${kind(v)} ${show(v)}`);
  }
  const ok = typeof v.isWellFormed === "function" ? v.isWellFormed() : WELL_FORMED.test(v);
  if (!ok) throw new EncodeError(`String: ${show(v)} contains a lone surrogate (not valid Unicode)`);
  return utf8Encoder.encode(v);
}

class StrNode extends Node {
  constructor() {
    super("String");
    this.hasDeps = true;
    this.hashable = true;
    this.setShape(shape(8, 4));
  }

  deps(v, w) {
    const b = utf8(v);
    if (b.length <= 7) return { inline: b };
    return { pos: w.append(b), len: b.length };
  }

  write(w, pos, _v, r) {
    if (r.inline) {
      w.buf.set(r.inline, pos);
      w.buf[pos + 7] = r.inline.length;
    } else {
      w.dv.setUint32(pos, r.len, true);
      w.dv.setInt32(pos + 4, r.pos - pos, true);
    }
  }

  dec(d, pos) {
    const data = d.data;
    const b7 = data[pos + 7];
    let raw;
    if (!(b7 & 0x80)) {
      if (b7 > 7) throw new DecodeError(`String at offset ${pos}: inline length ${b7} exceeds 7`);
      raw = data.subarray(pos, pos + b7);
    } else {
      const ln = d.dv.getUint32(pos, true);
      const off = d.dv.getInt32(pos + 4, true);
      const t = d.ptr(pos, off, ln, 1, "String");
      raw = data.subarray(t, t + ln);
      d.lo = t + ln;
    }
    try {
      return utf8Decoder.decode(raw);
    } catch {
      throw new DecodeError(`String at offset ${pos}: invalid UTF-8`);
    }
  }

  feed(v, parts) {
    parts.push(utf8(v), Uint8Array.of(0xff));
  }
}

function asBytes(v, what) {
  if (v instanceof Uint8Array) return v;
  if (ArrayBuffer.isView(v)) return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  if (v instanceof ArrayBuffer) return new Uint8Array(v);
  throw new EncodeError(`${what}: expected a Uint8Array, got ${kind(v)} ${show(v)}`);
}

class BytesNode extends Node {
  constructor() {
    super("Vec<u8>");
    this.hasDeps = true;
    this.hashable = true;
    this.setShape(shape(8, 4));
  }

  deps(v, w) {
    const b = asBytes(v, this.name);
    return { pos: w.append(b), len: b.length };
  }

  write(w, pos, _v, r) {
    w.dv.setInt32(pos, r.pos - pos, true);
    w.dv.setUint32(pos + 4, r.len, true);
  }

  dec(d, pos) {
    const off = d.dv.getInt32(pos, true);
    const ln = d.dv.getUint32(pos + 4, true);
    const t = d.ptr(pos, off, ln, 1, this.name);
    d.lo = t + ln;
    return d.data.slice(t, t + ln);
  }

  feed(v, parts) {
    const b = asBytes(v, this.name);
    parts.push(u64le(b.length), b);
  }
}

class VecNode extends Node {
  constructor(elem) {
    super(`Vec<${elem.name}>`);
    this.elem = elem;
    this.hasDeps = true;
    this.setShape(shape(8, 4));
  }

  get hashable() {
    return this.elem.hashable;
  }

  set hashable(_v) {}

  deps(v, w) {
    if (!Array.isArray(v)) throw new EncodeError(`${this.name}: expected an array, got ${kind(v)}`);
    const e = this.elem;
    const rs = e.hasDeps ? v.map((x) => e.deps(x, w)) : null;
    w.pad(e.align);
    const pos = w.reserve(v.length * e.size);
    for (let i = 0; i < v.length; i++) e.write(w, pos + i * e.size, v[i], rs ? rs[i] : undefined);
    return { pos, len: v.length };
  }

  write(w, pos, _v, r) {
    w.dv.setInt32(pos, r.pos - pos, true);
    w.dv.setUint32(pos + 4, r.len, true);
  }

  dec(d, pos) {
    const e = this.elem;
    const off = d.dv.getInt32(pos, true);
    const ln = d.dv.getUint32(pos + 4, true);
    if (e.size === 0 && ln > MAX_ZST_ELEMENTS) {
      throw new DecodeError(
        `${this.name} at offset ${pos}: ${ln} zero-sized elements exceed the limit ${MAX_ZST_ELEMENTS}`,
      );
    }
    const size = ln * e.size;
    const t = d.ptr(pos, off, size, e.align, this.name);
    const out = new Array(ln);
    if (e.hasDeps) {
      const saved = d.hi;
      d.hi = t;
      for (let i = 0; i < ln; i++) out[i] = e.dec(d, t + i * e.size);
      d.lo = t + size;
      d.hi = saved;
    } else {
      for (let i = 0; i < ln; i++) out[i] = e.dec(d, t + i * e.size);
      d.lo = t + size;
    }
    return out;
  }

  feed(v, parts, archived = false) {
    if (!Array.isArray(v)) throw new EncodeError(`${this.name}: expected an array, got ${kind(v)}`);
    parts.push(u64le(v.length));
    for (const x of v) this.elem.feed(x, parts, archived);
  }
}

class BoxNode extends Node {
  constructor(inner) {
    super(`Box<${inner.name}>`);
    this.inner = inner;
    this.hasDeps = true;
    this.setShape(shape(4, 4));
  }

  get hashable() {
    return this.inner.hashable;
  }

  set hashable(_v) {}

  deps(v, w) {
    const i = this.inner;
    const r = i.hasDeps ? i.deps(v, w) : undefined;
    w.pad(i.align);
    const pos = w.reserve(i.size);
    i.write(w, pos, v, r);
    return pos;
  }

  write(w, pos, _v, r) {
    w.dv.setInt32(pos, r - pos, true);
  }

  dec(d, pos) {
    const i = this.inner;
    const off = d.dv.getInt32(pos, true);
    const t = d.ptr(pos, off, i.size, i.align, this.name);
    const saved = d.hi;
    d.hi = t;
    const v = i.dec(d, t);
    d.lo = t + i.size;
    d.hi = saved;
    return v;
  }

  feed(v, parts, archived = false) {
    this.inner.feed(v, parts, archived);
  }
}

// ---------------------------------------------------------------- aggregates

/** Fields at fixed offsets inside an object, written/checked in declaration order. */
class Fields {
  constructor(nodes, offsets, reverse = false) {
    this.nodes = nodes;
    this.offsets = offsets;
    // rkyv 0.7 serializes tuple elements last to first.
    this.reverse = reverse;
    this.depsIdx = [];
    nodes.forEach((n, i) => {
      if (n.hasDeps) this.depsIdx.push(i);
    });
    if (reverse) this.depsIdx.reverse();
  }

  deps(vals, w, label) {
    if (!this.depsIdx.length) return null;
    const rs = new Array(this.nodes.length);
    for (const i of this.depsIdx) rs[i] = label(i, () => this.nodes[i].deps(vals[i], w));
    return rs;
  }

  write(w, base, vals, rs, label) {
    const { nodes, offsets } = this;
    for (let i = 0; i < nodes.length; i++) {
      label(i, () => nodes[i].write(w, base + offsets[i], vals[i], rs ? rs[i] : undefined));
    }
  }

  dec(d, pos) {
    // Declaration order, tuples included: rkyv 0.7 writes tuple elements last to first
    // but bytecheck 0.6 checks them first to last, so a tuple with out-of-line data in
    // two elements fails rkyv's own validation, and here too (as hardlight_core does).
    const { nodes, offsets } = this;
    const out = new Array(nodes.length);
    for (let i = 0; i < nodes.length; i++) out[i] = nodes[i].dec(d, pos + offsets[i]);
    return out;
  }
}

/** Run fn, prefixing an EncodeError's message with where it happened. */
function labelled(prefix) {
  return (i, fn) => {
    try {
      return fn();
    } catch (e) {
      if (e instanceof EncodeError && !e.labelled) {
        const err = new EncodeError(`${prefix(i)}: ${e.message}`);
        err.labelled = true;
        throw err;
      }
      throw e;
    }
  };
}

class StructNode extends Node {
  constructor(name) {
    super(name);
  }

  setup(names, nodes) {
    const { offsets, shape: s } = structLayout(nodes.map((n) => n.shape));
    this.names = names;
    this.fields = new Fields(nodes, offsets);
    this.hasDeps = this.fields.depsIdx.length > 0;
    this.hashable = nodes.every((n) => n.hashable);
    this.label = labelled((i) => `${this.name}.${names[i]}`);
    this.setShape(s);
  }

  vals(v) {
    if (v === null || typeof v !== "object" || Array.isArray(v)) {
      throw new EncodeError(`${this.name}: expected an object, got ${kind(v)} ${show(v)}`);
    }
    return this.names.map((n) => v[n]);
  }

  deps(v, w) {
    const vals = this.vals(v);
    return { vals, rs: this.fields.deps(vals, w, this.label) };
  }

  write(w, pos, v, r) {
    if (r === undefined) r = { vals: this.vals(v), rs: null };
    this.fields.write(w, pos, r.vals, r.rs, this.label);
  }

  dec(d, pos) {
    const vals = this.fields.dec(d, pos);
    const out = {};
    this.names.forEach((n, i) => {
      out[n] = vals[i];
    });
    return out;
  }

  feed(v, parts, archived = false) {
    const vals = this.vals(v);
    this.fields.nodes.forEach((n, i) => n.feed(vals[i], parts, archived));
  }
}

/** Rust tuples (repr(C)-like but reordered by rustc) and arrays [T; N]; JS arrays. */
class TupleNode extends Node {
  constructor(nodes, name, elem = null) {
    super(name);
    this.n = nodes.length;
    this.elem = elem;
    let offsets;
    let s;
    if (elem) {
      offsets = cLayout(nodes.map((x) => x.shape)).offsets;
      s = arrayShape(elem.shape, nodes.length);
    } else {
      ({ offsets, shape: s } = tupleLayout(nodes.map((x) => x.shape)));
    }
    this.fields = new Fields(nodes, offsets, !elem);
    this.hasDeps = this.fields.depsIdx.length > 0;
    this.hashable = nodes.every((x) => x.hashable);
    this.label = labelled((i) => `${this.name}[${i}]`);
    this.setShape(s);
  }

  check(v) {
    if (!Array.isArray(v)) {
      throw new EncodeError(`${this.name}: expected an array, got ${kind(v)} ${show(v)}`);
    }
    if (v.length !== this.n) throw new EncodeError(`${this.name}: expected ${this.n} items, got ${v.length}`);
    return v;
  }

  deps(v, w) {
    return this.fields.deps(this.check(v), w, this.label);
  }

  write(w, pos, v, r) {
    this.fields.write(w, pos, this.check(v), r === undefined ? null : r, this.label);
  }

  dec(d, pos) {
    return this.fields.dec(d, pos);
  }

  feed(v, parts, archived = false) {
    this.check(v);
    if (this.elem) parts.push(u64le(v.length));
    this.fields.nodes.forEach((n, i) => n.feed(v[i], parts, archived));
  }
}

class UnitEnumNode extends Node {
  constructor(name, variants) {
    super(name);
    if (!variants.length) throw new TypeError(`enum ${name} has no variants`);
    this.variants = variants;
    this.index = new Map(variants.map((v, i) => [v, i]));
    const lay = enumLayout(variants.length, variants.map(() => []));
    this.tagSize = lay.tagSize;
    this.setShape(lay.shape);
  }

  tagOf(v) {
    let name = v;
    if (v !== null && typeof v === "object" && !Array.isArray(v)) {
      const keys = Object.keys(v);
      if (keys.length === 1 && (v[keys[0]] === null || v[keys[0]] === undefined)) name = keys[0];
    }
    const tag = typeof name === "string" ? this.index.get(name) : undefined;
    if (tag === undefined) {
      throw new EncodeError(`${this.name}: expected one of its variant names, got ${show(v)}`);
    }
    return tag;
  }

  write(w, pos, v) {
    const tag = this.tagOf(v);
    if (this.tagSize === 1) w.buf[pos] = tag;
    else w.dv.setUint16(pos, tag, true);
  }

  dec(d, pos) {
    const tag = this.tagSize === 1 ? d.data[pos] : d.dv.getUint16(pos, true);
    if (tag >= this.variants.length) {
      throw new DecodeError(
        `${this.name} at offset ${pos}: tag ${tag} is out of range (0..${this.variants.length})`,
      );
    }
    return this.variants[tag];
  }
}

/**
 * Enums with data: variants [{name, kind: "unit" | "fields" | "tuple", names, nodes}].
 * Values are {Variant: payload}.
 */
class EnumNode extends Node {
  constructor(name) {
    super(name);
  }

  setup(variants) {
    const lay = enumLayout(
      variants.length,
      variants.map((v) => v.nodes.map((n) => n.shape)),
    );
    this.tagSize = lay.tagSize;
    this.variants = variants;
    this.byName = new Map(variants.map((v, i) => [v.name, i]));
    this.fields = variants.map((v, i) => new Fields(v.nodes, lay.offsets[i]));
    this.labels = variants.map((v) =>
      labelled((i) => `${this.name}::${v.name}.${v.kind === "tuple" ? i : v.names[i]}`),
    );
    this.hasDeps = this.fields.some((f) => f.depsIdx.length > 0);
    this.setShape(lay.shape);
  }

  split(v) {
    let name;
    let payload = null;
    if (typeof v === "string") {
      name = v;
    } else if (v !== null && typeof v === "object" && !Array.isArray(v)) {
      const keys = Object.keys(v);
      if (keys.length === 1) {
        name = keys[0];
        payload = v[name];
      }
    }
    const tag = name === undefined ? undefined : this.byName.get(name);
    if (tag === undefined) {
      throw new EncodeError(`${this.name}: expected {Variant: payload} of its variants, got ${show(v)}`);
    }
    const variant = this.variants[tag];
    let vals;
    if (variant.kind === "unit") {
      vals = [];
    } else if (variant.kind === "tuple") {
      if (!Array.isArray(payload) || payload.length !== variant.nodes.length) {
        throw new EncodeError(
          `${this.name}::${name}: expected an array of ${variant.nodes.length} values, got ${show(payload)}`,
        );
      }
      vals = payload;
    } else {
      if (payload === null || typeof payload !== "object" || Array.isArray(payload)) {
        throw new EncodeError(`${this.name}::${name}: expected an object of its fields, got ${show(payload)}`);
      }
      vals = variant.names.map((n) => payload[n]);
    }
    return { tag, vals };
  }

  deps(v, w) {
    const { tag, vals } = this.split(v);
    return { tag, vals, rs: this.fields[tag].deps(vals, w, this.labels[tag]) };
  }

  write(w, pos, v, r) {
    if (r === undefined) r = { ...this.split(v), rs: null };
    if (this.tagSize === 1) w.buf[pos] = r.tag;
    else w.dv.setUint16(pos, r.tag, true);
    this.fields[r.tag].write(w, pos, r.vals, r.rs, this.labels[r.tag]);
  }

  dec(d, pos) {
    const tag = this.tagSize === 1 ? d.data[pos] : d.dv.getUint16(pos, true);
    if (tag >= this.variants.length) {
      throw new DecodeError(
        `${this.name} at offset ${pos}: tag ${tag} is out of range (0..${this.variants.length})`,
      );
    }
    const variant = this.variants[tag];
    const vals = this.fields[tag].dec(d, pos);
    let payload = null;
    if (variant.kind === "tuple") payload = vals;
    else if (variant.kind === "fields") {
      payload = {};
      variant.names.forEach((n, i) => {
        payload[n] = vals[i];
      });
    }
    return { [variant.name]: payload };
  }
}

/** Option<T> (null = None) and Result<T, E> ({Ok: v} / {Err: e}): u8-tagged enums. */
class TaggedNode extends Node {
  constructor(name, nodes, tagOf, make, valOf) {
    super(name);
    const lay = enumLayout(2, [nodes[0] ? [nodes[0].shape] : [], [nodes[1].shape]]);
    this.fields = [
      new Fields(nodes[0] ? [nodes[0]] : [], lay.offsets[0]),
      new Fields([nodes[1]], lay.offsets[1]),
    ];
    this.tagOf = tagOf;
    this.make = make;
    this.valOf = valOf;
    this.label = labelled(() => name);
    this.hasDeps = this.fields.some((f) => f.depsIdx.length > 0);
    this.setShape(lay.shape);
  }

  deps(v, w) {
    const tag = this.tagOf(v);
    const vals = this.fields[tag].nodes.length ? [this.valOf(v, tag)] : [];
    return { tag, vals, rs: this.fields[tag].deps(vals, w, this.label) };
  }

  write(w, pos, v, r) {
    if (r === undefined) {
      const tag = this.tagOf(v);
      r = { tag, vals: this.fields[tag].nodes.length ? [this.valOf(v, tag)] : [], rs: null };
    }
    w.buf[pos] = r.tag;
    this.fields[r.tag].write(w, pos, r.vals, r.rs, this.label);
  }

  dec(d, pos) {
    const tag = d.data[pos];
    if (tag > 1) throw new DecodeError(`${this.name} at offset ${pos}: tag ${tag} is out of range (0..2)`);
    return this.make(tag, this.fields[tag].dec(d, pos));
  }
}

/** Can a value of this node be null (so that Some(it) needs a wrapper to be told apart)? */
function nullable(node) {
  if (node instanceof BoxNode) return nullable(node.inner);
  return node instanceof UnitNode || (node instanceof TaggedNode && node.isOption);
}

function optionNode(inner) {
  const name = `Option<${inner.name}>`;
  let node;
  if (nullable(inner)) {
    // Option<Option<T>>, Option<()>: Some is written {Some: value}, None null
    node = new TaggedNode(
      name,
      [null, inner],
      (v) => {
        if (v === null || v === undefined) return 0;
        if (typeof v === "object" && Object.keys(v).length === 1 && "Some" in v) return 1;
        throw new EncodeError(`${name}: expected null or {Some: value}, got ${show(v)}`);
      },
      (tag, vals) => (tag === 0 ? null : { Some: vals[0] }),
      (v) => v.Some,
    );
  } else {
    node = new TaggedNode(
      name,
      [null, inner],
      (v) => (v === null || v === undefined ? 0 : 1),
      (tag, vals) => (tag === 0 ? null : vals[0]),
      (v) => v,
    );
  }
  node.isOption = true;
  return node;
}

function resultNode(ok, err) {
  const name = `Result<${ok.name}, ${err.name}>`;
  return new TaggedNode(
    name,
    [ok, err],
    (v) => {
      if (v !== null && typeof v === "object") {
        const keys = Object.keys(v);
        if (keys.length === 1 && keys[0] === "Ok") return 0;
        if (keys.length === 1 && keys[0] === "Err") return 1;
      }
      throw new EncodeError(`${name}: expected {Ok: value} or {Err: error}, got ${show(v)}`);
    },
    (tag, vals) => (tag === 0 ? { Ok: vals[0] } : { Err: vals[0] }),
    (v, tag) => (tag === 0 ? v.Ok : v.Err),
  );
}

function hexKey(b) {
  let s = "";
  for (const x of b) s += x.toString(16).padStart(2, "0");
  return s;
}

class MapNode extends Node {
  constructor(key, val) {
    super(`HashMap<${key.name}, ${val.name}>`);
    if (!key.hashable) {
      throw new TypeError(`${key.name} cannot be a HashMap key (rkyv could not hash it the same way)`);
    }
    this.key = key;
    this.val = val;
    const lay = structLayout([key.shape, val.shape]);
    this.entry = new Fields([key, val], lay.offsets);
    this.entryShape = lay.shape;
    this.hasDeps = true;
    this.label = labelled((i) => `${this.name} ${i ? "value" : "key"}`);
    // ArchivedHashMap { index: { len, displace }, entries }: no reordering applies.
    this.setShape(shape(12, 4));
  }

  items(v) {
    if (v instanceof Map) return [...v.entries()];
    if (v !== null && typeof v === "object" && !Array.isArray(v) && this.key instanceof StrNode) {
      return Object.entries(v);
    }
    throw new EncodeError(`${this.name}: expected a Map, got ${kind(v)}`);
  }

  feedOf(k) {
    const parts = [];
    this.label(0, () => this.key.feed(k, parts));
    return concat(parts);
  }

  deps(v, w) {
    const items = this.items(v);
    const { key, val } = this;
    const feeds = items.map(([k]) => this.feedOf(k));
    const seen = new Set();
    for (const f of feeds) {
      const h = hexKey(f);
      if (seen.has(h)) throw new EncodeError(`${this.name}: two keys are equal`);
      seen.add(h);
    }
    const { displace, order } = buildIndex(feeds);
    const n = items.length;
    w.pad(4);
    const dpos = w.reserve(4 * n);
    displace.forEach((x, i) => w.dv.setUint32(dpos + 4 * i, x, true));
    const slots = order.map((i) => items[i]);
    const rs = slots.map(([k, x]) => [
      key.hasDeps ? this.label(0, () => key.deps(k, w)) : undefined,
      val.hasDeps ? this.label(1, () => val.deps(x, w)) : undefined,
    ]);
    const es = this.entryShape;
    w.pad(es.align);
    const epos = w.len;
    slots.forEach(([k, x], i) => {
      const p = w.reserve(es.size);
      this.entry.write(w, p, [k, x], rs[i], this.label);
    });
    return { n, dpos, epos };
  }

  write(w, pos, _v, r) {
    w.dv.setUint32(pos, r.n, true);
    w.dv.setInt32(pos + 4, r.dpos - (pos + 4), true);
    w.dv.setInt32(pos + 8, r.epos - (pos + 8), true);
  }

  dec(d, pos) {
    const dv = d.dv;
    const n = dv.getUint32(pos, true);
    const doff = dv.getInt32(pos + 4, true);
    const eoff = dv.getInt32(pos + 8, true);
    const what = this.name;
    let t = d.ptr(pos + 4, doff, 4 * n, 4, what + " displacements");
    const displace = new Array(n);
    for (let i = 0; i < n; i++) displace[i] = dv.getUint32(t + 4 * i, true);
    d.lo = t + 4 * n;
    displace.forEach((x, i) => {
      if (n <= x && x < SEED_BASE) {
        throw new DecodeError(`${what} at offset ${pos}: invalid displacement ${x} at index ${i}`);
      }
    });
    const es = this.entryShape;
    if (es.size === 0 && n > MAX_ZST_ELEMENTS) {
      throw new DecodeError(`${what} at offset ${pos}: too many zero-sized entries (${n})`);
    }
    t = d.ptr(pos + 8, eoff, n * es.size, es.align, what + " entries");
    const saved = d.hi;
    d.hi = t;
    const entries = [];
    for (let i = 0; i < n; i++) entries.push(this.entry.dec(d, t + i * es.size));
    d.lo = t + n * es.size;
    d.hi = saved;
    const out = new Map();
    entries.forEach(([k, x], i) => {
      const parts = [];
      this.key.feed(k, parts, true); // rkyv's validator hashes the archived key
      if (lookup(displace, concat(parts)) !== i) {
        throw new DecodeError(`${what} at offset ${pos}: entry ${i} is not where the hash index puts its key`);
      }
      out.set(k, x);
    });
    return out;
  }
}

// ---------------------------------------------------------------- compilation

const SCALARS = {
  u8: () => new IntNode("u8", 8, false),
  u16: () => new IntNode("u16", 16, false),
  u32: () => new IntNode("u32", 32, false),
  u64: () => new IntNode("u64", 64, false),
  u128: () => new IntNode("u128", 128, false),
  i8: () => new IntNode("i8", 8, true),
  i16: () => new IntNode("i16", 16, true),
  i32: () => new IntNode("i32", 32, true),
  i64: () => new IntNode("i64", 64, true),
  i128: () => new IntNode("i128", 128, true),
  usize: () => new IntNode("usize", 32, false),
  isize: () => new IntNode("isize", 32, true),
  f32: () => new FloatNode("f32", 32),
  f64: () => new FloatNode("f64", 64),
  bool: () => new BoolNode(),
  char: () => new CharNode(),
  string: () => new StrNode(),
  bytes: () => new BytesNode(),
  unit: () => new UnitNode(),
};

/** The scalar type names of the notation. */
export const SCALAR_TYPES = Object.freeze(Object.keys(SCALARS));

function need(node, ctx) {
  if (!node.finished) {
    throw new TypeError(`${ctx} contains itself without indirection: use a Box or a Vec`);
  }
  return node;
}

/** Compiles type notation to nodes; one per schema (named types are shared). */
export class TypeSystem {
  constructor(types = {}) {
    this.types = types || {};
    this.named = new Map();
    this.inline = new Map();
    this.codecs = new Map();
  }

  node(t) {
    if (typeof t === "string") {
      const make = SCALARS[t];
      if (!make) throw new TypeError(`unknown scalar type ${JSON.stringify(t)}`);
      return make();
    }
    if (t === null || typeof t !== "object") throw new TypeError(`bad type notation ${show(t)}`);
    if ("ref" in t) {
      const cached = this.named.get(t.ref);
      if (cached) return cached;
      const def = this.types[t.ref];
      if (!def) throw new TypeError(`unknown type ${JSON.stringify(t.ref)}`);
      return this.define(def, (node) => this.named.set(t.ref, node), () => this.named.delete(t.ref));
    }
    if ("vec" in t) return new VecNode(this.node(t.vec));
    if ("option" in t) return optionNode(need(this.node(t.option), "Option"));
    if ("box" in t) return new BoxNode(this.node(t.box));
    if ("array" in t) {
      const elem = need(this.node(t.array), "array");
      const n = Number(t.len);
      if (!Number.isInteger(n) || n < 0) throw new TypeError(`bad array length ${show(t.len)}`);
      return new TupleNode(new Array(n).fill(elem), `[${elem.name}; ${n}]`, elem);
    }
    if ("tuple" in t) {
      const nodes = t.tuple.map((x) => need(this.node(x), "tuple"));
      return new TupleNode(nodes, `(${nodes.map((x) => x.name).join(", ")})`);
    }
    if ("result" in t) {
      const [ok, err] = t.result;
      return resultNode(need(this.node(ok), "Result"), need(this.node(err), "Result"));
    }
    if ("map" in t) {
      const [k, v] = t.map;
      return new MapNode(need(this.node(k), "map key"), need(this.node(v), "map"));
    }
    if ("struct" in t || "enum" in t) {
      const key = JSON.stringify(t);
      const cached = this.inline.get(key);
      if (cached) return cached;
      return this.define(t, (node) => this.inline.set(key, node), () => this.inline.delete(key));
    }
    throw new TypeError(`unknown type notation ${show(t)}`);
  }

  define(def, register, unregister) {
    try {
      if ("struct" in def) {
        const node = new StructNode(def.struct);
        register(node);
        const fields = def.fields || [];
        node.setup(
          fields.map((f) => f[0]),
          fields.map((f) => need(this.node(f[1]), def.struct)),
        );
        return node;
      }
      if ("enum" in def) {
        const variants = def.variants || [];
        variants.forEach((v, i) => {
          if (v.length > 2 && v[2] !== i) {
            throw new TypeError(`${def.enum}::${v[0]}: tag ${v[2]} is not its position ${i}`);
          }
        });
        if (variants.every((v) => v[1] === null || v[1] === undefined)) {
          const node = new UnitEnumNode(def.enum, variants.map((v) => v[0]));
          register(node);
          return node;
        }
        const node = new EnumNode(def.enum);
        register(node);
        node.setup(
          variants.map(([name, body]) => {
            if (body === null || body === undefined) return { name, kind: "unit", names: [], nodes: [] };
            if ("tuple" in body) {
              return {
                name,
                kind: "tuple",
                names: body.tuple.map((_, i) => String(i)),
                nodes: body.tuple.map((x) => need(this.node(x), `${def.enum}::${name}`)),
              };
            }
            const fields = body.fields || [];
            return {
              name,
              kind: fields.length ? "fields" : "unit",
              names: fields.map((f) => f[0]),
              nodes: fields.map((f) => need(this.node(f[1]), `${def.enum}::${name}`)),
            };
          }),
        );
        return node;
      }
    } catch (e) {
      unregister();
      throw e;
    }
    throw new TypeError(`bad type definition ${show(def)}`);
  }

  /** The cached Codec for a type of this system. */
  codec(t) {
    const key = typeof t === "string" ? t : JSON.stringify(t);
    let c = this.codecs.get(key);
    if (!c) {
      c = new Codec(need(this.node(t), key));
      this.codecs.set(key, c);
    }
    return c;
  }
}

/** A compiled codec for one type: encode(value), decode(bytes), size, align. */
export class Codec {
  constructor(node) {
    this.node = node;
    this.name = node.name;
    this.size = node.size;
    this.align = node.align;
  }

  /** Archive value as rkyv::to_bytes would: a fresh Uint8Array. */
  encode(value) {
    const node = this.node;
    const w = new Writer();
    try {
      let r;
      if (node.hasDeps) {
        r = node.deps(value, w);
        w.pad(node.align);
      }
      const pos = w.reserve(node.size);
      node.write(w, pos, value, r);
    } catch (e) {
      if (e instanceof EncodeError) throw e;
      if (e instanceof TypeError || e instanceof RangeError) {
        throw new EncodeError(`${node.name}: cannot encode ${kind(value)}: ${e.message}`);
      }
      throw e;
    }
    return w.bytes();
  }

  /** Validate bytes as rkyv::from_bytes would and return the value (DecodeError if not). */
  decode(bytes) {
    let data = bytes;
    if (data instanceof ArrayBuffer) data = new Uint8Array(data);
    else if (!(data instanceof Uint8Array)) {
      if (ArrayBuffer.isView(data)) data = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
      else throw new DecodeError(`${this.name}: expected bytes, got ${kind(bytes)}`);
    }
    const node = this.node;
    const n = data.length;
    const root = n - node.size;
    if (root < 0) {
      throw new DecodeError(`${node.name}: buffer of ${n} bytes is too short for the ${node.size}-byte root`);
    }
    if (root % node.align) {
      throw new DecodeError(`${node.name}: root at offset ${root} is not aligned to ${node.align}`);
    }
    const d = new Reader(data);
    d.hi = root;
    try {
      return node.dec(d, root);
    } catch (e) {
      if (e instanceof DecodeError) throw e;
      throw new DecodeError(`${node.name}: malformed archive (${e.name}: ${e.message})`);
    }
  }
}

/** A Codec for type notation `t`, with named types (`{ref}`) looked up in `types`. */
export function compile(t, types = {}) {
  return new TypeSystem(types).codec(t);
}

/** Archive `value` of type `t` (a one-off compile). */
export function encode(value, t, types = {}) {
  return compile(t, types).encode(value);
}

/** Read a value of type `t` from rkyv bytes (a one-off compile). */
export function decode(bytes, t, types = {}) {
  return compile(t, types).decode(bytes);
}
