// The envelope (ClientMessage / ServerMessage) and raw deflate against messages.json.

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  CLIENT_MESSAGE,
  InflateError,
  MessageTooLarge,
  RPC_HANDLER_ERROR,
  SERVER_MESSAGE,
  STATE_UPDATE,
  TOPIC,
  compile,
  decodeClientMessage,
  decodeServerMessage,
  deflateRaw,
  encodeClientMessage,
  encodeServerMessage,
  inflateRaw,
} from "../src/index.js";
import { fromHex, fromJson, loadVectors, toHex } from "./helpers.js";

const DOC = loadVectors("messages.json");

// The names messages.json uses, as the envelope module declares them.
const NAMED = {
  ClientMessage: CLIENT_MESSAGE,
  ServerMessage: SERVER_MESSAGE,
  RpcHandlerError: RPC_HANDLER_ERROR,
  Topic: TOPIC,
  StateUpdate: STATE_UPDATE,
  "Result<Vec<u8>,RpcHandlerError>": { result: ["bytes", RPC_HANDLER_ERROR] },
};

const CASES = [...DOC.messages, ...DOC.standalone];

test("messages.json: every message and standalone type archives byte-exactly", () => {
  assert.ok(CASES.length >= 40);
  for (const c of CASES) {
    const t = NAMED[c.type];
    assert.ok(t, `no declaration for ${c.type}`);
    const codec = compile(t);
    const value = fromJson(t, c.value, {}, true);
    assert.equal(toHex(codec.encode(value)), c.rkyv, `${c.type} ${c.note ?? ""}`);
    assert.deepStrictEqual(codec.decode(fromHex(c.rkyv)), value, `${c.type} ${c.note ?? ""}`);
  }
});

test("messages.json: the envelope helpers read and write the reference's archives", () => {
  for (const c of DOC.messages) {
    const bytes = fromHex(c.rkyv);
    if (c.type === "ClientMessage") {
      const { id, internal } = c.value.RPCRequest;
      assert.equal(toHex(encodeClientMessage(id, fromHex(internal))), c.rkyv);
      assert.deepStrictEqual(decodeClientMessage(bytes), { id, internal: fromHex(internal) });
    } else {
      const value = fromJson(SERVER_MESSAGE, c.value, {}, true);
      assert.equal(toHex(encodeServerMessage(value)), c.rkyv);
      assert.deepStrictEqual(decodeServerMessage(bytes), value);
    }
  }
});

test("messages.json: the reference's deflate streams (levels 0, 1, 6, 9) inflate to the archive", async () => {
  let n = 0;
  for (const c of DOC.messages) {
    for (const level of ["deflate_l0", "deflate_l1", "deflate_l6", "deflate_l9"]) {
      assert.equal(toHex(await inflateRaw(fromHex(c[level]))), c.rkyv, `${c.note} ${level}`);
      n += 1;
    }
  }
  assert.ok(n >= 120);
});

test("deflate: small messages are one stored block (as level 0 writes them), larger ones round-trip", async () => {
  let stored = 0;
  for (const c of DOC.messages) {
    const raw = fromHex(c.rkyv);
    const packed = await deflateRaw(raw);
    if (raw.length <= 32) {
      assert.equal(toHex(packed), c.deflate_l0, c.note);
      stored += 1;
    } else {
      assert.ok(packed.length < raw.length + 5, c.note);
    }
    assert.equal(toHex(await inflateRaw(packed)), c.rkyv);
  }
  assert.ok(stored > 0);
});

// (Bytes trailing a complete stream are left to the platform: Node 20's
// DecompressionStream ignores them, so they are not tested here.)
test("inflate refuses corrupt, truncated and oversized input", async () => {
  const big = new Uint8Array(100000).fill(7);
  const packed = await deflateRaw(big);
  assert.equal((await inflateRaw(packed)).length, 100000);
  await assert.rejects(inflateRaw(packed, 99999), MessageTooLarge);
  await assert.rejects(inflateRaw(packed.subarray(0, packed.length - 2)), InflateError);
  await assert.rejects(inflateRaw(Uint8Array.of(0xff, 0xff, 0xff)), InflateError);
  await assert.rejects(inflateRaw(fromHex("010400fbff01020304"), 3), MessageTooLarge);
});
