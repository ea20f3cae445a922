// HardLight's envelope: ClientMessage / ServerMessage, archived by the generic codec.
//
//   enum ClientMessage { RPCRequest { id: u8, internal: Vec<u8> } }
//   enum ServerMessage {
//       RPCResponse { id: u8, output: Result<Vec<u8>, RpcHandlerError> },
//       NewEvent { topic: Topic, payload: Vec<u8> },
//       StateChange(Vec<StateUpdate>) }
//   struct Topic { inner: Vec<u8>, is_string: bool }
//   struct StateUpdate { index: usize, data: Vec<u8> }
//
// Each WebSocket binary message is the raw DEFLATE of one such archive.

import { TypeSystem } from "./codec.js";
import { DEFAULT_MAX_INFLATED_SIZE, deflateRaw, inflateRaw } from "./deflate.js";
import { RPC_HANDLER_ERRORS } from "./errors.js";

export const TOPIC = Object.freeze({
  struct: "Topic",
  fields: [
    ["inner", "bytes"],
    ["is_string", "bool"],
  ],
});
export const RPC_HANDLER_ERROR = Object.freeze({
  enum: "RpcHandlerError",
  variants: RPC_HANDLER_ERRORS.map((name, i) => [name, null, i]),
});
export const STATE_UPDATE = Object.freeze({
  struct: "StateUpdate",
  fields: [
    ["index", "usize"],
    ["data", "bytes"],
  ],
});
export const CLIENT_MESSAGE = Object.freeze({
  enum: "ClientMessage",
  variants: [
    [
      "RPCRequest",
      {
        fields: [
          ["id", "u8"],
          ["internal", "bytes"],
        ],
      },
      0,
    ],
  ],
});
export const SERVER_MESSAGE = Object.freeze({
  enum: "ServerMessage",
  variants: [
    [
      "RPCResponse",
      {
        fields: [
          ["id", "u8"],
          ["output", { result: ["bytes", RPC_HANDLER_ERROR] }],
        ],
      },
      0,
    ],
    [
      "NewEvent",
      {
        fields: [
          ["topic", TOPIC],
          ["payload", "bytes"],
        ],
      },
      1,
    ],
    ["StateChange", { fields: [["updates", { vec: STATE_UPDATE }]] }, 2],
  ],
});

const system = new TypeSystem();
const clientCodec = system.codec(CLIENT_MESSAGE);
const serverCodec = system.codec(SERVER_MESSAGE);

/** The rkyv archive of ClientMessage::RPCRequest {id, internal}. */
export function encodeClientMessage(id, internal) {
  return clientCodec.encode({ RPCRequest: { id, internal } });
}

/** {id, internal} of a ClientMessage archive (DecodeError if it is not one). */
export function decodeClientMessage(bytes) {
  return clientCodec.decode(bytes).RPCRequest;
}

/** The rkyv archive of a ServerMessage value ({RPCResponse: ...} | {NewEvent: ...} | {StateChange: ...}). */
export function encodeServerMessage(message) {
  return serverCodec.encode(message);
}

/** A ServerMessage value from its archive (DecodeError if it is not one). */
export function decodeServerMessage(bytes) {
  return serverCodec.decode(bytes);
}

/** One WebSocket message's payload for a call. */
export async function packRequest(id, internal) {
  return deflateRaw(encodeClientMessage(id, internal));
}

/** Inflate (bounded) and decode a server's message. */
export async function unpackServerMessage(data, maxSize = DEFAULT_MAX_INFLATED_SIZE) {
  return decodeServerMessage(await inflateRaw(data, maxSize));
}

/** A topic made from a string (Rust Topic::from("...")). */
export function topicFromString(name) {
  return { inner: new TextEncoder().encode(name), is_string: true };
}

/** A topic made from raw bytes (Rust Topic::from(vec![...])). */
export function topicFromBytes(bytes) {
  return { inner: Uint8Array.from(bytes), is_string: false };
}

/** A readable form of a topic: its string when made from one, else 0x + hex. */
export function topicToString(topic) {
  if (topic.is_string) {
    try {
      return new TextDecoder("utf-8", { fatal: true }).decode(topic.inner);
    } catch {
      // not UTF-8 after all: show the bytes
    }
  }
  return "0x" + Array.from(topic.inner, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Do two topics name the same thing (bytes and the string flag)? */
export function topicEquals(a, b) {
  if (a.is_string !== b.is_string || a.inner.length !== b.inner.length) return false;
  return a.inner.every((x, i) => x === b.inner[i]);
}
