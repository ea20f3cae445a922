// Test helpers: where the vector files are, hex, and vector JSON -> JS values.

import { existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
export const JS_ROOT = resolve(here, "..");
export const REPO_ROOT = resolve(JS_ROOT, "..", "..");

function search(dir, name, depth) {
  if (depth < 0) return null;
  let entries;
  try {
    entries = readdirSync(dir);
  } catch {
    return null;
  }
  if (entries.includes(name)) return dir;
  for (const e of entries) {
    if (e === "node_modules" || e.startsWith(".")) continue;
    const p = join(dir, e);
    try {
      if (statSync(p).isDirectory()) {
        const found = search(p, name, depth - 1);
        if (found) return found;
      }
    } catch {
      // unreadable: skip
    }
  }
  return null;
}

/** The conformance vectors directory (HL_VECTORS_DIR, the known place, or a search). */
export function vectorsDir() {
  if (process.env.HL_VECTORS_DIR) return process.env.HL_VECTORS_DIR;
  const known = join(REPO_ROOT, "conformance", "hardlight_conformance", "data", "vectors");
  if (existsSync(join(known, "rkyv-public.json"))) return known;
  const found = search(REPO_ROOT, "rkyv-public.json", 6);
  if (!found) throw new Error("cannot find the conformance vectors (set HL_VECTORS_DIR)");
  return found;
}

export function loadJson(path) {
  return JSON.parse(readFileSync(path, "utf8"));
}

export function loadVectors(name) {
  return loadJson(join(vectorsDir(), name));
}

export function loadSchema(app) {
  return loadJson(join(JS_ROOT, "test", "schemas", `${app}.json`));
}

export function fromHex(h) {
  const out = new Uint8Array(h.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(h.slice(2 * i, 2 * i + 2), 16);
  return out;
}

export function toHex(b) {
  let s = "";
  for (const x of b) s += x.toString(16).padStart(2, "0");
  return s;
}

const BIG = new Set(["u64", "i64", "u128", "i128"]);
const SMALL = new Set(["u8", "u16", "u32", "i8", "i16", "i32", "usize", "isize"]);

function float(jv, bits = 64) {
  if (typeof jv === "string" && jv.startsWith("0x")) {
    // IEEE bits as hex
    const dv = new DataView(new ArrayBuffer(8));
    if (bits === 32) {
      dv.setUint32(0, parseInt(jv.slice(2), 16));
      return dv.getFloat32(0);
    }
    dv.setBigUint64(0, BigInt(jv));
    return dv.getFloat64(0);
  }
  if (jv === "inf") return Infinity;
  if (jv === "-inf") return -Infinity;
  if (jv === "nan") return NaN;
  return Number(jv);
}

function resolveRef(t, types) {
  while (t && typeof t === "object" && "ref" in t) t = types[t.ref];
  return t;
}

function fieldValues(fields, payload, types, newtype) {
  const out = {};
  if (payload === null || payload === undefined) payload = [];
  if (!Array.isArray(payload) && typeof payload === "object") {
    for (const [name, ft] of fields) out[name] = fromJson(ft, payload[name], types, newtype);
  } else if (newtype && fields.length === 1) {
    out[fields[0][0]] = fromJson(fields[0][1], payload, types, newtype);
  } else {
    if (payload.length !== fields.length) throw new Error(`expected ${fields.length} values`);
    fields.forEach(([name, ft], i) => {
      out[name] = fromJson(ft, payload[i], types, newtype);
    });
  }
  return out;
}

/**
 * A vector file's JSON value as the JS codec's value of type `t`.
 * `newtype`: a one-field variant's payload is the field's value itself (messages.json,
 * apps.json), as the Python harness (hardlight_conformance._vectors.from_json) reads it.
 */
export function fromJson(t, jv, types = {}, newtype = false) {
  t = resolveRef(t, types);
  if (typeof t === "string") {
    if (SMALL.has(t)) return Number(jv);
    if (BIG.has(t)) return BigInt(jv);
    if (t === "f32") return Math.fround(float(jv, 32));
    if (t === "f64") return float(jv, 64);
    if (t === "bool") return Boolean(jv);
    if (t === "char" || t === "string") return String(jv);
    if (t === "bytes") return fromHex(jv);
    if (t === "unit") return null;
    throw new Error(`unknown scalar ${t}`);
  }
  if ("vec" in t) return jv.map((x) => fromJson(t.vec, x, types, newtype));
  if ("array" in t) return jv.map((x) => fromJson(t.array, x, types, newtype));
  if ("tuple" in t) return t.tuple.map((x, i) => fromJson(x, (jv || [])[i], types, newtype));
  if ("option" in t) {
    if (jv === null || jv === undefined) return null;
    // the oracle file writes every Some as {"Some": value}; the codec does so only
    // where the value may itself be null (nested options, Option<()>)
    const inner = jv && typeof jv === "object" && !Array.isArray(jv) && Object.keys(jv).length === 1 && "Some" in jv ? jv.Some : jv;
    const value = fromJson(t.option, inner, types, newtype);
    return mayBeNull(t.option, types) ? { Some: value } : value;
  }
  if ("box" in t) return fromJson(t.box, jv, types, newtype);
  if ("result" in t) {
    const [tag] = Object.keys(jv);
    return { [tag]: fromJson(t.result[tag === "Ok" ? 0 : 1], jv[tag], types, newtype) };
  }
  if ("map" in t) {
    const [kt, vt] = t.map;
    const pairs = Array.isArray(jv) ? jv : Object.entries(jv);
    const keyIsString = resolveRef(kt, types) === "string";
    return new Map(
      pairs.map(([k, x]) => [
        fromJson(kt, !Array.isArray(jv) && !keyIsString ? JSON.parse(k) : k, types, newtype),
        fromJson(vt, x, types, newtype),
      ]),
    );
  }
  if ("struct" in t) return fieldValues(t.fields || [], jv, types, newtype);
  if ("enum" in t) {
    const [name, payload] = typeof jv === "string" ? [jv, null] : Object.entries(jv)[0];
    const variant = t.variants.find((v) => v[0] === name);
    if (!variant) throw new Error(`unknown variant ${name}`);
    if (t.variants.every((v) => v[1] === null)) return name;
    const body = variant[1];
    if (body === null) return { [name]: null };
    if ("tuple" in body) return { [name]: body.tuple.map((x, i) => fromJson(x, payload[i], types, newtype)) };
    if (!(body.fields || []).length) return { [name]: null };
    return { [name]: fieldValues(body.fields, payload, types, newtype) };
  }
  throw new Error(`unknown notation ${JSON.stringify(t)}`);
}

function mayBeNull(t, types) {
  t = resolveRef(t, types);
  if (t === "unit") return true;
  if (t && typeof t === "object" && "box" in t) return mayBeNull(t.box, types);
  return Boolean(t && typeof t === "object" && "option" in t);
}

/** Does the notation contain a float (whose NaN payloads JS cannot keep)? */
export function hasFloat(t, types = {}, seen = new Set()) {
  if (typeof t === "string") return t === "f32" || t === "f64";
  if (t === null || typeof t !== "object") return false;
  if ("ref" in t) {
    if (seen.has(t.ref)) return false;
    seen.add(t.ref);
    return hasFloat(types[t.ref], types, seen);
  }
  return JSON.stringify(t).includes('"f32"') || JSON.stringify(t).includes('"f64"');
}
