// HardLight 2 client for browsers (and Node >= 20): rkyv 0.7 codec, raw deflate,
// the hl/2 envelope, RPC with up to 256 calls in flight, the state mirror and events.

export * from "./errors.js";
export { Codec, MAX_ZST_ELEMENTS, SCALAR_TYPES, TypeSystem, compile, decode, encode } from "./codec.js";
export { RKYV_SEEDS, buildIndex, lookup, seahash } from "./seahash.js";
export {
  DEFAULT_MAX_INFLATED_SIZE,
  InflateError,
  MessageTooLarge,
  deflateRaw,
  inflateRaw,
} from "./deflate.js";
export {
  CLIENT_MESSAGE,
  RPC_HANDLER_ERROR,
  SERVER_MESSAGE,
  STATE_UPDATE,
  TOPIC,
  decodeClientMessage,
  decodeServerMessage,
  encodeClientMessage,
  encodeServerMessage,
  packRequest,
  topicEquals,
  topicFromBytes,
  topicFromString,
  topicToString,
  unpackServerMessage,
} from "./envelope.js";
export { CompiledSchema, SCHEMA_VERSION, callType } from "./schema.js";
export { BROWSER_PROTOCOL, Client, DEFAULT_MAX_MESSAGE_SIZE, MAX_CALLS_IN_FLIGHT, PROTOCOL, connect } from "./client.js";
