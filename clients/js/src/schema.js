// Reading a schema written by `python -m hardlight schema`: the call enum, the
// codecs of every method, the state's fields and defaults, and the event type.

import { TypeSystem } from "./codec.js";

export const SCHEMA_VERSION = 1;

function fromHex(h) {
  const out = new Uint8Array(h.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(h.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** The service's RpcCall enum: one variant per method, in wire order, its arguments as fields. */
export function callType(schema) {
  return {
    enum: "RpcCall",
    variants: schema.methods.map((m, i) => {
      if (m.tag !== i) throw new TypeError(`method ${m.name}: tag ${m.tag} is not its position ${i}`);
      return [m.variant, m.args.length ? { fields: m.args.map((a) => [a.name, a.type]) } : null, i];
    }),
  };
}

function camel(name) {
  return name.replace(/_([a-z0-9])/g, (_, c) => c.toUpperCase());
}

/** A compiled schema: codecs for calls, results, state fields and events. */
export class CompiledSchema {
  constructor(schema) {
    if (!schema || typeof schema !== "object" || !Array.isArray(schema.methods)) {
      throw new TypeError("not a hardlight schema (no methods)");
    }
    if (schema.schema !== undefined && schema.schema !== SCHEMA_VERSION) {
      throw new TypeError(`schema version ${schema.schema} is not supported (want ${SCHEMA_VERSION})`);
    }
    this.schema = schema;
    this.types = new TypeSystem(schema.types || {});
    this.callType = callType(schema);
    this.callCodec = this.types.codec(this.callType);
    this.methods = new Map();
    for (const m of schema.methods) {
      const method = {
        name: m.name,
        tag: m.tag,
        variant: m.variant,
        argNames: m.args.map((a) => a.name),
        result: this.types.codec(m.returns),
      };
      this.methods.set(m.name, method);
      const alias = camel(m.name);
      if (!this.methods.has(alias)) this.methods.set(alias, method);
    }
    this.stateFields = (schema.state?.fields || []).map((f) => ({
      index: f.index,
      name: f.name,
      codec: this.types.codec(f.type),
      default: f.default,
    }));
    this.eventCodec = schema.event ? this.types.codec(schema.event) : null;
  }

  method(name) {
    const m = this.methods.get(name);
    if (!m) throw new TypeError(`${this.schema.service} has no method ${JSON.stringify(name)}`);
    return m;
  }

  /** The archived RpcCall for name(...args). */
  encodeCall(name, args) {
    const m = this.method(name);
    if (args.length !== m.argNames.length) {
      throw new TypeError(`${m.name}() takes ${m.argNames.length} arguments, ${args.length} given`);
    }
    const payload = m.argNames.length ? Object.fromEntries(m.argNames.map((a, i) => [a, args[i]])) : null;
    return this.callCodec.encode({ [m.variant]: payload });
  }

  /** A fresh state object holding every field's default (where both sides start). */
  initialState() {
    if (!this.schema.state) return null;
    const state = {};
    for (const f of this.stateFields) state[f.name] = f.codec.decode(fromHex(f.default));
    return state;
  }

  /** Method names (as in the schema, plus camelCase aliases). */
  methodNames() {
    return [...this.methods.keys()];
  }
}
