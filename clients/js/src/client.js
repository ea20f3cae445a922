// The client side of HardLight 2 over a WebSocket (subprotocol hl/2, offered by
// browsers under its token-safe alias hl.2: see BROWSER_PROTOCOL).
//
//   const client = await Client.connect("wss://example.com/", schema);
//   await client.rpc.increment(1);          // or client.call("increment", 1)
//   client.state.counter;                   // the mirror of the server's connection state
//   client.onState((state, changed) => ...);
//   client.onEvent(({ topic, value }) => ...);  // or: for await (const ev of client.events())
//
// Calls get the lowest free id of 256 (TooManyCallsInFlight past that, nothing sent);
// an id is freed by its answer (a timed-out call keeps its id until the late answer
// comes, so ids are never reused while the server may still answer). Server messages
// are handled strictly in arrival order, so a call's StateChange (which this port's
// servers send before the response) is applied before the call resolves.

import { CompiledSchema } from "./schema.js";
import { DEFAULT_MAX_INFLATED_SIZE, MessageTooLarge } from "./deflate.js";
import { packRequest, unpackServerMessage } from "./envelope.js";
import {
  CallTimeout,
  ClientCompressError,
  ClientDecodeError,
  ClientEncodeError,
  ClientNotConnected,
  ConnectionRefused,
  EncodeError,
  HardLightError,
  ProtocolMismatch,
  RpcError,
  TooManyCallsInFlight,
} from "./errors.js";

/** The subprotocol of the Rust crate and of the Python servers. */
export const PROTOCOL = "hl/2";
/**
 * What the client offers by default. Browsers cannot offer "hl/2": a WebSocket
 * subprotocol must be an RFC 2616 token and "/" is a separator, so `new WebSocket(url,
 * "hl/2")` throws a SyntaxError (Chromium does; so does Node's built-in WebSocket).
 * A server must accept "hl.2" as an alias of "hl/2" (everything after the handshake is
 * identical) for browsers to reach it.
 */
export const BROWSER_PROTOCOL = "hl.2";
export const MAX_CALLS_IN_FLIGHT = 256;
export const DEFAULT_MAX_MESSAGE_SIZE = 1024 * 1024;

const DEFAULTS = {
  protocol: BROWSER_PROTOCOL,
  callTimeout: 30000,
  connectTimeout: 10000,
  maxInflatedSize: DEFAULT_MAX_INFLATED_SIZE,
  maxMessageSize: DEFAULT_MAX_MESSAGE_SIZE,
  WebSocket: undefined,
};

function toBytes(data) {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  return null;
}

export class Client {
  /** Open a connection; resolves once the server accepted the hl/2 upgrade. */
  static async connect(url, schema, options = {}) {
    const client = new Client(url, schema, options);
    await client.opened;
    return client;
  }

  constructor(url, schema, options = {}) {
    this.url = String(url);
    this.options = { ...DEFAULTS, ...options };
    this.schema = schema instanceof CompiledSchema ? schema : new CompiledSchema(schema);
    /** The mirror of the server-side connection state (a new object after every change). */
    this.state = this.schema.initialState();
    /** Server messages that did not inflate or decode (ignored, as the reference does). */
    this.ignoredMessages = 0;
    this._open = false;
    this._ids = new Array(MAX_CALLS_IN_FLIGHT).fill(false);
    this._reserved = 0;
    this._pending = new Map();
    this._stateListeners = new Set();
    this._eventListeners = new Set();
    this._closeListeners = new Set();
    this._iterators = new Set();
    this._sendChain = Promise.resolve();
    this._recvChain = Promise.resolve();
    /** Calls by name: client.rpc.increment(1), client.rpc.sendMessage("hi") (camelCase aliases too). */
    this.rpc = {};
    for (const name of this.schema.methodNames()) {
      this.rpc[name] = (...args) => this.call(name, ...args);
    }
    let resolveClosed;
    /** Resolves with {code, reason, wasClean} when the connection has closed. */
    this.closed = new Promise((resolve) => {
      resolveClosed = resolve;
    });
    this._resolveClosed = resolveClosed;
    /** Resolves with the client once open; rejects with ConnectionRefused. */
    this.opened = this._connect();
    this.opened.catch(() => {});
  }

  _connect() {
    const WS = this.options.WebSocket ?? globalThis.WebSocket;
    if (!WS) {
      return Promise.reject(new HardLightError("no WebSocket implementation: pass options.WebSocket"));
    }
    let ws;
    try {
      ws = new WS(this.url, this.options.protocol);
    } catch (e) {
      const err = new ConnectionRefused(`cannot connect to ${this.url}: ${e.message}`, { url: this.url });
      this._resolveClosed({ code: 1006, reason: err.message, wasClean: false });
      return Promise.reject(err);
    }
    this.ws = ws;
    ws.binaryType = "arraybuffer";
    return new Promise((resolve, reject) => {
      let settled = false;
      const timer = setTimeout(() => {
        if (settled) return;
        settled = true;
        reject(new ConnectionRefused(`no answer from ${this.url} within ${this.options.connectTimeout} ms`, { url: this.url }));
        try {
          ws.close();
        } catch {
          // closing a socket that never opened: nothing else to do
        }
      }, this.options.connectTimeout);
      ws.onopen = () => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (ws.protocol !== this.options.protocol) {
          reject(
            new ProtocolMismatch(
              `${this.url} answered without the ${this.options.protocol} subprotocol (${JSON.stringify(ws.protocol)})`,
              { url: this.url },
            ),
          );
          ws.close(1000, "subprotocol mismatch");
          return;
        }
        this._open = true;
        resolve(this);
      };
      ws.onerror = () => {
        // the close event that follows says what happened
      };
      ws.onclose = (ev) => {
        clearTimeout(timer);
        if (!settled) {
          settled = true;
          // Browsers hide why an upgrade failed (status, refusal reason, TLS) from scripts.
          reject(
            new ConnectionRefused(
              `connection to ${this.url} failed: refused, unreachable, TLS failure, or the ` +
                `server refused the upgrade (close code ${ev.code})`,
              { url: this.url },
            ),
          );
        }
        const info = { code: ev.code, reason: ev.reason || "", wasClean: Boolean(ev.wasClean) };
        this._recvChain = this._recvChain.then(() => this._closedWith(info));
      };
      ws.onmessage = (ev) => this._receive(ev.data);
    });
  }

  /** Is the connection open (calls can be sent)? */
  get isOpen() {
    return this._open;
  }

  /** How many call ids are reserved (calls awaiting an answer, including timed-out ones). */
  get inFlight() {
    return this._reserved;
  }

  /** Call method `name` with arguments; resolves with its decoded result. */
  call(name, ...args) {
    return this.callWith(name, args);
  }

  /** Call with options: {timeout: ms or null for none} (default: options.callTimeout). */
  callWith(name, args, { timeout = this.options.callTimeout } = {}) {
    if (!this._open) {
      return Promise.reject(new ClientNotConnected(`not connected to ${this.url}`));
    }
    const method = this.schema.methods.get(name);
    if (!method) {
      return Promise.reject(new ClientEncodeError(`${this.schema.schema.service} has no method ${JSON.stringify(name)}`));
    }
    let internal;
    try {
      internal = this.schema.encodeCall(name, args);
    } catch (e) {
      if (e instanceof EncodeError || e instanceof TypeError) {
        return Promise.reject(new ClientEncodeError(`${method.name}: ${e.message}`));
      }
      throw e;
    }
    const id = this._ids.indexOf(false);
    if (id < 0) {
      return Promise.reject(new TooManyCallsInFlight(`all ${MAX_CALLS_IN_FLIGHT} call ids are in flight`));
    }
    this._ids[id] = true;
    this._reserved += 1;
    return new Promise((resolve, reject) => {
      const entry = { method, resolve, reject, timer: null, abandoned: false };
      this._pending.set(id, entry);
      if (timeout !== null && timeout !== undefined && Number.isFinite(timeout)) {
        entry.timer = setTimeout(() => {
          entry.abandoned = true;
          reject(new CallTimeout(`${method.name}: no answer within ${timeout} ms`));
        }, timeout);
      }
      const packed = packRequest(id, internal);
      packed.catch(() => {});
      this._sendChain = this._sendChain.then(async () => {
        let payload;
        try {
          payload = await packed;
        } catch (e) {
          this._settle(id, (en) => en.reject(new ClientCompressError(`${method.name}: ${e.message}`)));
          return;
        }
        if (!this._open || this._pending.get(id) !== entry) return;
        this.ws.send(payload);
      });
    });
  }

  /** Free id and run fn(entry) unless the caller gave up. */
  _settle(id, fn) {
    const entry = this._pending.get(id);
    if (!entry) return false;
    this._pending.delete(id);
    this._ids[id] = false;
    this._reserved -= 1;
    if (entry.timer !== null) clearTimeout(entry.timer);
    if (!entry.abandoned) fn(entry);
    return true;
  }

  _receive(data) {
    if (typeof data === "string") return; // text frames are ignored
    const bytes = toBytes(data);
    if (bytes === null) {
      this.ignoredMessages += 1;
      return;
    }
    if (bytes.length > this.options.maxMessageSize) {
      this.close(1000, "message too big");
      return;
    }
    this._recvChain = this._recvChain.then(() => this._handle(bytes));
  }

  async _handle(bytes) {
    if (!this._open) return;
    let message;
    try {
      message = await unpackServerMessage(bytes, this.options.maxInflatedSize);
    } catch (e) {
      if (e instanceof MessageTooLarge) {
        this.close(1000, "message too big");
      } else {
        this.ignoredMessages += 1;
      }
      return;
    }
    if (message.RPCResponse) this._response(message.RPCResponse);
    else if (message.NewEvent) this._event(message.NewEvent);
    else if (message.StateChange) this._stateChange(message.StateChange.updates);
  }

  _response({ id, output }) {
    this._settle(id, (entry) => {
      if ("Err" in output) {
        entry.reject(RpcError.forKind(output.Err, `${entry.method.name}: ${output.Err}`));
        return;
      }
      let value;
      try {
        value = entry.method.result.decode(output.Ok);
      } catch (e) {
        entry.reject(new ClientDecodeError(`${entry.method.name}: ${e.message}`));
        return;
      }
      entry.resolve(value);
    });
  }

  _event({ topic, payload }) {
    const event = { topic, payload, value: undefined, error: null };
    const codec = this.schema.eventCodec;
    if (codec) {
      try {
        event.value = codec.decode(payload);
      } catch (e) {
        event.error = e;
      }
    }
    for (const listener of [...this._eventListeners]) {
      try {
        listener(event);
      } catch (e) {
        console.error("hardlight: event listener threw", e);
      }
    }
    for (const it of this._iterators) it.push(event);
  }

  _stateChange(updates) {
    const fields = this.schema.stateFields;
    if (!this.state) return;
    const next = { ...this.state };
    const changed = [];
    for (const { index, data } of updates) {
      const field = fields[index];
      if (!field) continue; // unknown indexes are ignored, as the reference does
      try {
        next[field.name] = field.codec.decode(data);
        changed.push(field.name);
      } catch (e) {
        console.warn(`hardlight: state field ${field.name}: undecodable update ignored: ${e.message}`);
      }
    }
    if (!changed.length) return;
    this.state = next;
    for (const listener of [...this._stateListeners]) {
      try {
        listener(next, changed);
      } catch (e) {
        console.error("hardlight: state listener threw", e);
      }
    }
  }

  _closedWith(info) {
    const wasOpen = this._open;
    this._open = false;
    const why = `connection closed (${info.code}${info.reason ? " " + info.reason : ""})`;
    for (const id of [...this._pending.keys()]) {
      this._settle(id, (entry) => entry.reject(new ClientNotConnected(`${entry.method.name}: ${why}`, info)));
    }
    for (const it of this._iterators) it.end();
    this._iterators.clear();
    this._resolveClosed(info);
    if (wasOpen) {
      for (const listener of [...this._closeListeners]) {
        try {
          listener(info);
        } catch (e) {
          console.error("hardlight: close listener threw", e);
        }
      }
    }
  }

  /** listener(state, changedFieldNames) after every StateChange; returns an unsubscribe function. */
  onState(listener) {
    this._stateListeners.add(listener);
    return () => this._stateListeners.delete(listener);
  }

  /** listener({topic, payload, value, error}) for every event; returns an unsubscribe function. */
  onEvent(listener) {
    this._eventListeners.add(listener);
    return () => this._eventListeners.delete(listener);
  }

  /** listener({code, reason, wasClean}) when an open connection closes; returns an unsubscribe function. */
  onClose(listener) {
    this._closeListeners.add(listener);
    return () => this._closeListeners.delete(listener);
  }

  /**
   * The events from now on, as an async iterator (it ends when the connection closes):
   * `for await (const { topic, value } of client.events()) ...`.
   */
  events() {
    const queue = [];
    let waiting = null;
    let done = !this._open;
    const it = {
      push: (ev) => {
        if (waiting) {
          const w = waiting;
          waiting = null;
          w({ value: ev, done: false });
        } else queue.push(ev);
      },
      end: () => {
        done = true;
        if (waiting) {
          const w = waiting;
          waiting = null;
          w({ value: undefined, done: true });
        }
      },
    };
    if (!done) this._iterators.add(it);
    const iterators = this._iterators;
    return {
      [Symbol.asyncIterator]() {
        return this;
      },
      next() {
        if (queue.length) return Promise.resolve({ value: queue.shift(), done: false });
        if (done) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve) => {
          waiting = resolve;
        });
      },
      return() {
        iterators.delete(it);
        it.end();
        queue.length = 0;
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }

  /** Close the connection (pending calls fail with ClientNotConnected); resolves when closed. */
  close(code = 1000, reason = "") {
    if (this.ws && this.ws.readyState < 2) {
      try {
        this.ws.close(code, reason);
      } catch {
        this.ws.close();
      }
    }
    return this.closed;
  }
}

/** Client.connect(url, schema, options). */
export function connect(url, schema, options = {}) {
  return Client.connect(url, schema, options);
}
