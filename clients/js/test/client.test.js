// The client against a scripted WebSocket: ids, limits, errors, state, events, close.

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  CallTimeout,
  Client,
  ClientDecodeError,
  ClientEncodeError,
  ClientNotConnected,
  CompiledSchema,
  ConnectionRefused,
  HandlerPanicked,
  ProtocolMismatch,
  RPC_HANDLER_ERRORS,
  RpcError,
  TooManyCallsInFlight,
  decodeClientMessage,
  deflateRaw,
  encodeServerMessage,
  inflateRaw,
} from "../src/index.js";
import { loadSchema, loadVectors, toHex } from "./helpers.js";

const COUNTER = loadSchema("counter");
const APPS = loadVectors("apps.json");

class FakeSocket {
  constructor(url, protocol) {
    this.url = url;
    this.requested = protocol;
    this.protocol = "";
    this.readyState = 0;
    this.sent = [];
    FakeSocket.last = this;
  }

  send(data) {
    this.sent.push(new Uint8Array(data));
  }

  close(code = 1000, reason = "") {
    if (this.readyState >= 2) return;
    this.readyState = 3;
    setTimeout(() => this.onclose({ code, reason, wasClean: true }), 0);
  }

  // -- the test's side
  accept(protocol = this.requested) {
    this.protocol = protocol;
    this.readyState = 1;
    this.onopen();
  }

  fail() {
    this.readyState = 3;
    this.onerror?.({});
    this.onclose({ code: 1006, reason: "", wasClean: false });
  }

  async deliver(message) {
    const bytes = await deflateRaw(encodeServerMessage(message));
    this.onmessage({ data: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length) });
  }

  async requests() {
    const out = [];
    for (const s of this.sent) out.push(decodeClientMessage(await inflateRaw(s)));
    return out;
  }
}

async function open(schema = COUNTER, options = {}) {
  const client = new Client("ws://test/", schema, { WebSocket: FakeSocket, ...options });
  const ws = FakeSocket.last;
  ws.accept();
  await client.opened;
  return { client, ws };
}

const settle = () => new Promise((r) => setTimeout(r, 5));
// inflating runs on a stream: under load it can take longer than one short settle
async function until(predicate, what, ms = 2000) {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`waited ${ms} ms for ${what}`);
    await settle();
  }
}
const u32 = (n) => {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n, true);
  return b;
};

test("a call goes out as the reference's RPCRequest and resolves with the decoded result", async () => {
  const { client, ws } = await open();
  assert.equal(ws.requested, "hl.2");
  const inc = client.rpc.increment(10);
  const get = client.call("get");
  await settle();
  const reqs = await ws.requests();
  const vector = APPS.counter.rpc_calls.find((c) => c.value.Increment?.amount === 10);
  assert.deepStrictEqual(reqs.map((r) => r.id), [0, 1]);
  assert.equal(toHex(reqs[0].internal), vector.rkyv);
  await ws.deliver({ RPCResponse: { id: 1, output: { Ok: u32(7) } } });
  await ws.deliver({ RPCResponse: { id: 0, output: { Ok: new Uint8Array(0) } } });
  assert.equal(await get, 7);
  assert.equal(await inc, null);
  assert.equal(client.inFlight, 0);
});

test("256 calls in flight; the 257th fails with TooManyCallsInFlight and sends nothing; the lowest free id is reused", async () => {
  const { client, ws } = await open();
  const calls = [];
  for (let i = 0; i < 256; i++) calls.push(client.rpc.get());
  await assert.rejects(client.rpc.get(), TooManyCallsInFlight);
  await settle();
  assert.equal(ws.sent.length, 256);
  const ids = (await ws.requests()).map((r) => r.id);
  assert.deepStrictEqual(ids, [...Array(256).keys()]);
  await ws.deliver({ RPCResponse: { id: 200, output: { Ok: u32(200) } } });
  await ws.deliver({ RPCResponse: { id: 17, output: { Ok: u32(17) } } });
  assert.equal(await calls[17], 17);
  assert.equal(await calls[200], 200);
  const next = client.rpc.get();
  await settle();
  assert.equal((await ws.requests()).at(-1).id, 17);
  for (let id = 0; id < 256; id++) {
    if (id !== 200) await ws.deliver({ RPCResponse: { id, output: { Ok: u32(id) } } });
  }
  assert.equal(await next, 17);
  assert.deepStrictEqual(await Promise.all(calls), [...Array(256).keys()]);
  assert.equal(client.inFlight, 0);
});

test("every RpcHandlerError answers with its own error class", async () => {
  const { client, ws } = await open();
  for (const [i, kind] of RPC_HANDLER_ERRORS.entries()) {
    const call = client.rpc.get();
    await settle();
    await ws.deliver({ RPCResponse: { id: 0, output: { Err: kind } } });
    const err = await call.then(
      () => assert.fail("resolved"),
      (e) => e,
    );
    assert.ok(err instanceof RpcError, kind);
    assert.equal(err.kind, kind);
    assert.equal(err.constructor.name, kind);
    assert.equal(RPC_HANDLER_ERRORS.indexOf(err.kind), i);
  }
  const call = client.rpc.get();
  await settle();
  await ws.deliver({ RPCResponse: { id: 0, output: { Err: "HandlerPanicked" } } });
  await assert.rejects(call, HandlerPanicked);
});

test("bad arguments fail with ClientEncodeError before an id is taken; a bad answer with ClientDecodeError", async () => {
  const { client, ws } = await open();
  await assert.rejects(client.rpc.increment(-1), ClientEncodeError);
  await assert.rejects(client.rpc.increment("1"), ClientEncodeError);
  await assert.rejects(client.rpc.increment(), ClientEncodeError);
  await assert.rejects(client.call("nope"), ClientEncodeError);
  await settle();
  assert.equal(ws.sent.length, 0);
  assert.equal(client.inFlight, 0);
  const get = client.rpc.get();
  await settle();
  await ws.deliver({ RPCResponse: { id: 0, output: { Ok: Uint8Array.of(1, 2) } } });
  await assert.rejects(get, ClientDecodeError);
});

test("StateChange updates the mirror (unknown indexes ignored) before the call it precedes resolves", async () => {
  const { client, ws } = await open();
  const seen = [];
  client.onState((state, changed) => seen.push([state.counter, changed]));
  assert.equal(client.state.counter, 0);
  const inc = client.rpc.increment(5);
  await settle();
  const topic = APPS.counter.state_fields.find((f) => f.field === "topic" && f.value.inner === "2a");
  await ws.deliver({
    StateChange: {
      updates: [
        { index: 0, data: u32(5) },
        { index: 1, data: Uint8Array.from(Buffer.from(topic.data, "hex")) },
        { index: 9, data: u32(1) },
      ],
    },
  });
  await ws.deliver({ RPCResponse: { id: 0, output: { Ok: new Uint8Array(0) } } });
  await inc;
  assert.equal(client.state.counter, 5);
  assert.deepStrictEqual(client.state.topic, { inner: Uint8Array.of(0x2a), is_string: false });
  assert.deepStrictEqual(seen, [[5, ["counter", "topic"]]]);
});

test("events reach listeners and iterators, decoded with the schema's event type", async () => {
  const { client, ws } = await open();
  const got = [];
  client.onEvent((ev) => got.push(ev.value));
  const it = client.events();
  for (const c of APPS.counter.events) {
    await ws.deliver({
      NewEvent: { topic: { inner: Uint8Array.of(1), is_string: false }, payload: Buffer.from(c.rkyv, "hex") },
    });
  }
  await settle();
  const first = await it.next();
  assert.deepStrictEqual(first.value.value, { Incremented: { to: 1, from: 0 } });
  assert.deepStrictEqual(first.value.topic, { inner: Uint8Array.of(1), is_string: false });
  assert.deepStrictEqual(got.at(-1), { ServerSentTest: null });
  assert.equal(got.length, APPS.counter.events.length);
  await ws.deliver({ NewEvent: { topic: { inner: new Uint8Array(0), is_string: true }, payload: Uint8Array.of(9) } });
  await settle();
  assert.equal(got.at(-1), undefined);
  await it.return();
});

test("a timed-out call fails with CallTimeout and keeps its id until the late answer", async () => {
  const { client, ws } = await open();
  const slow = client.callWith("get", [], { timeout: 20 });
  await assert.rejects(slow, CallTimeout);
  assert.ok((await slow.catch((e) => e)) instanceof ClientNotConnected);
  assert.equal(client.inFlight, 1);
  const other = client.rpc.get();
  await settle();
  assert.deepStrictEqual((await ws.requests()).map((r) => r.id), [0, 1]);
  await ws.deliver({ RPCResponse: { id: 0, output: { Ok: u32(1) } } });
  await settle();
  assert.equal(client.inFlight, 1);
  await ws.deliver({ RPCResponse: { id: 1, output: { Ok: u32(2) } } });
  assert.equal(await other, 2);
});

test("undecodable messages and text frames are ignored; the connection stays open", async () => {
  const { client, ws } = await open();
  ws.onmessage({ data: Uint8Array.of(1, 2, 3).buffer });
  ws.onmessage({ data: "text" });
  await ws.deliver({ RPCResponse: { id: 0, output: { Ok: u32(1) } } }); // nobody waits: ignored
  await until(() => client.ignoredMessages >= 1, "the unawaited answer to be ignored");
  await settle();
  assert.equal(client.ignoredMessages, 1);
  assert.ok(client.isOpen);
});

test("closing fails pending calls with ClientNotConnected, ends iterators and refuses new calls", async () => {
  const { client, ws } = await open();
  const pending = client.rpc.get();
  const it = client.events();
  const closes = [];
  client.onClose((info) => closes.push(info.code));
  await settle();
  ws.readyState = 3;
  ws.onclose({ code: 1001, reason: "going away", wasClean: true });
  const err = await pending.catch((e) => e);
  assert.ok(err instanceof ClientNotConnected);
  assert.equal(err.close.code, 1001);
  assert.deepStrictEqual(await it.next(), { value: undefined, done: true });
  assert.deepStrictEqual(await client.closed, { code: 1001, reason: "going away", wasClean: true });
  assert.deepStrictEqual(closes, [1001]);
  await assert.rejects(client.rpc.get(), ClientNotConnected);
});

test("a failed or wrong upgrade is ConnectionRefused", async () => {
  const refused = new Client("ws://test/", COUNTER, { WebSocket: FakeSocket });
  FakeSocket.last.fail();
  await assert.rejects(refused.opened, ConnectionRefused);
  const wrong = new Client("ws://test/", COUNTER, { WebSocket: FakeSocket });
  FakeSocket.last.accept("");
  await assert.rejects(wrong.opened, ProtocolMismatch);
  const silent = new Client("ws://test/", COUNTER, { WebSocket: FakeSocket, connectTimeout: 10 });
  await assert.rejects(silent.opened, /within 10 ms/);
  assert.throws(() => new CompiledSchema({}), TypeError);
});
