// The schemas made by `python -m hardlight schema` for the reference apps, read by the
// JS client, against apps.json (archives made by the reference's own Rust types).

import assert from "node:assert/strict";
import { test } from "node:test";

import { CompiledSchema, TypeSystem } from "../src/index.js";
import { fromHex, fromJson, loadSchema, loadVectors, toHex } from "./helpers.js";

const DOC = loadVectors("apps.json");
const APPS = Object.keys(DOC).filter((k) => DOC[k] && typeof DOC[k] === "object" && DOC[k].app);

const RUST_SCALARS = {
  u8: "u8", u16: "u16", u32: "u32", u64: "u64", u128: "u128",
  i8: "i8", i16: "i16", i32: "i32", i64: "i64", i128: "i128",
  usize: "usize", isize: "isize", f32: "f32", f64: "f64",
  bool: "bool", char: "char", String: "string", "()": "unit",
};

/** A Rust type as apps.json names it (`Option<String>`, `HashMap<u32, Task>`, `pet::Pet`, ...). */
function rustType(text, compiled) {
  let at = 0;
  const parse = () => {
    const m = /^\s*(\(\)|[A-Za-z_][A-Za-z0-9_]*(?:::[A-Za-z_][A-Za-z0-9_]*)*)/.exec(text.slice(at));
    if (!m) throw new Error(`cannot parse ${text}`);
    at += m[0].length;
    const name = m[1];
    const args = [];
    if (text[at] === "<") {
      at += 1;
      for (;;) {
        args.push(parse());
        while (text[at] === " ") at += 1;
        if (text[at] === ",") at += 1;
        else if (text[at] === ">") {
          at += 1;
          break;
        } else throw new Error(`cannot parse ${text}`);
      }
    }
    if (name in RUST_SCALARS && !args.length) return RUST_SCALARS[name];
    if (name === "Option") return { option: args[0] };
    if (name === "Box") return { box: args[0] };
    if (name === "Vec") return args[0] === "u8" ? "bytes" : { vec: args[0] };
    if (name === "HashMap") return { map: args };
    if (name === "Result") return { result: args };
    const short = name.split("::").pop();
    if (short === "RpcCall") return compiled.callType;
    if (compiled.schema.types[short]) return { ref: short };
    throw new Error(`the schema has no type ${name}`);
  };
  return parse();
}

for (const app of APPS) {
  test(`apps.json ${app}: calls, returns, events, types and state fields through the schema`, () => {
    const schema = loadSchema(app);
    const compiled = new CompiledSchema(schema);
    const types = new TypeSystem(schema.types);
    let n = 0;
    for (const [group, cases] of Object.entries(DOC[app])) {
      if (!Array.isArray(cases) || group === "state_fields") continue;
      for (const c of cases) {
        const t = rustType(c.type, compiled);
        const codec = types.codec(t);
        const value = fromJson(t, c.value, schema.types, true);
        assert.equal(toHex(codec.encode(value)), c.rkyv, `${app} ${group} ${JSON.stringify(c.value)}`);
        assert.deepStrictEqual(codec.decode(fromHex(c.rkyv)), value, `${app} ${group}`);
        n += 1;
      }
    }
    for (const c of DOC[app].state_fields ?? []) {
      const field = schema.state.fields[c.index];
      assert.equal(field.name, c.field, `${app} state field ${c.index}`);
      const codec = types.codec(field.type);
      // the schema's type and the reference's Rust type archive alike
      assert.equal(types.codec(rustType(c.type, compiled)).size, codec.size);
      const value = fromJson(field.type, c.value, schema.types, true);
      assert.equal(toHex(codec.encode(value)), c.data, `${app} state ${c.field}`);
      assert.deepStrictEqual(codec.decode(fromHex(c.data)), value);
      n += 1;
    }
    assert.ok(n >= 15, `${app}: ${n} cases`);
  });
}

test("apps.json rpc_calls: the client encodes each call as the reference does", () => {
  let n = 0;
  for (const app of APPS) {
    const schema = loadSchema(app);
    const compiled = new CompiledSchema(schema);
    for (const c of DOC[app].rpc_calls) {
      const [variant, payload] = Object.entries(c.value)[0];
      const method = schema.methods.find((m) => m.variant === variant);
      assert.ok(method, `${app}: no method for ${variant}`);
      const args = method.args.map((a) => fromJson(a.type, payload[a.name], schema.types, true));
      assert.equal(toHex(compiled.encodeCall(method.name, args)), c.rkyv, `${app} ${variant}`);
      n += 1;
    }
  }
  assert.ok(n >= 40);
});

test("the state starts from the schema's defaults", () => {
  assert.deepStrictEqual(new CompiledSchema(loadSchema("counter")).initialState(), {
    counter: 0,
    topic: { inner: new Uint8Array(0), is_string: false },
  });
  assert.deepStrictEqual(new CompiledSchema(loadSchema("todo")).initialState(), {
    tasks: new Map(),
    next_id: 0,
  });
  assert.deepStrictEqual(new CompiledSchema(loadSchema("pet")).initialState(), { pet: null });
});
