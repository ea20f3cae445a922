// TypeScript declarations of the HardLight 2 browser client (clients/js/src/index.js).
// Types generated for one service by `python -m hardlight schema ... --dts x.d.ts`
// plug in as `Client<XTypes>`.

// ---------------------------------------------------------------- type notation / schema

export type ScalarType =
  | "u8" | "u16" | "u32" | "u64" | "u128"
  | "i8" | "i16" | "i32" | "i64" | "i128"
  | "usize" | "isize" | "f32" | "f64"
  | "bool" | "char" | "string" | "bytes" | "unit";

export type FieldList = Array<[name: string, type: TypeNotation]>;
export type VariantBody = null | { fields: FieldList } | { tuple: TypeNotation[] };

export type TypeNotation =
  | ScalarType
  | { ref: string }
  | { vec: TypeNotation }
  | { option: TypeNotation }
  | { box: TypeNotation }
  | { array: TypeNotation; len: number }
  | { tuple: TypeNotation[] }
  | { result: [ok: TypeNotation, err: TypeNotation] }
  | { map: [key: TypeNotation, value: TypeNotation] }
  | { struct: string; fields: FieldList }
  | { enum: string; variants: Array<[name: string, body: VariantBody, tag?: number]> };

export interface SchemaMethod {
  name: string;
  tag: number;
  variant: string;
  args: Array<{ name: string; type: TypeNotation }>;
  returns: TypeNotation;
}

export interface SchemaStateField {
  index: number;
  name: string;
  type: TypeNotation;
  /** hex of the rkyv archive of the field's default value */
  default: string;
}

/** What `python -m hardlight schema pkg.module:Service` writes. */
export interface Schema {
  schema: 1;
  protocol: "hl/2";
  service: string;
  module: string;
  methods: SchemaMethod[];
  state: { name: string; fields: SchemaStateField[] } | null;
  event: TypeNotation | null;
  types: Record<string, TypeNotation>;
}

// ---------------------------------------------------------------- codec

export const SCALAR_TYPES: readonly ScalarType[];
export const MAX_ZST_ELEMENTS: number;

export class Codec {
  readonly name: string;
  readonly size: number;
  readonly align: number;
  /** rkyv::to_bytes of the value (EncodeError if it does not fit the type). */
  encode(value: unknown): Uint8Array;
  /** rkyv::from_bytes with validation (DecodeError on anything rkyv would refuse). */
  decode(bytes: Uint8Array | ArrayBuffer | ArrayBufferView): any;
}

export class TypeSystem {
  constructor(types?: Record<string, TypeNotation>);
  codec(type: TypeNotation): Codec;
}

export function compile(type: TypeNotation, types?: Record<string, TypeNotation>): Codec;
export function encode(value: unknown, type: TypeNotation, types?: Record<string, TypeNotation>): Uint8Array;
export function decode(bytes: Uint8Array, type: TypeNotation, types?: Record<string, TypeNotation>): any;

export const RKYV_SEEDS: readonly bigint[];
export function seahash(data: Uint8Array, seeds?: readonly bigint[]): bigint;
export function buildIndex(keys: Uint8Array[]): { displace: number[]; order: number[] };
export function lookup(displace: number[], key: Uint8Array): number | null;

// ---------------------------------------------------------------- deflate

export const DEFAULT_MAX_INFLATED_SIZE: number;
export function deflateRaw(data: Uint8Array): Promise<Uint8Array>;
export function inflateRaw(data: Uint8Array, maxSize?: number): Promise<Uint8Array>;

// ---------------------------------------------------------------- envelope

export interface Topic {
  inner: Uint8Array;
  is_string: boolean;
}

export type RpcHandlerErrorKind =
  | "ClientNotConnected" | "TooManyCallsInFlight" | "ClientEncodeError" | "ClientDecodeError"
  | "ServerEncodeError" | "ServerDecodeError" | "ClientCompressError" | "ClientDecompressError"
  | "ServerCompressError" | "ServerDecompressError" | "HandlerPanicked";

export type ServerMessage =
  | { RPCResponse: { id: number; output: { Ok: Uint8Array } | { Err: RpcHandlerErrorKind } } }
  | { NewEvent: { topic: Topic; payload: Uint8Array } }
  | { StateChange: { updates: Array<{ index: number; data: Uint8Array }> } };

export const TOPIC: TypeNotation;
export const RPC_HANDLER_ERROR: TypeNotation;
export const STATE_UPDATE: TypeNotation;
export const CLIENT_MESSAGE: TypeNotation;
export const SERVER_MESSAGE: TypeNotation;
export function encodeClientMessage(id: number, internal: Uint8Array): Uint8Array;
export function decodeClientMessage(bytes: Uint8Array): { id: number; internal: Uint8Array };
export function encodeServerMessage(message: ServerMessage): Uint8Array;
export function decodeServerMessage(bytes: Uint8Array): ServerMessage;
export function packRequest(id: number, internal: Uint8Array): Promise<Uint8Array>;
export function unpackServerMessage(data: Uint8Array, maxSize?: number): Promise<ServerMessage>;
export function topicFromString(name: string): Topic;
export function topicFromBytes(bytes: ArrayLike<number>): Topic;
export function topicToString(topic: Topic): string;
export function topicEquals(a: Topic, b: Topic): boolean;

// ---------------------------------------------------------------- schema

export const SCHEMA_VERSION: 1;
export function callType(schema: Schema): TypeNotation;

export class CompiledSchema {
  constructor(schema: Schema);
  readonly schema: Schema;
  readonly types: TypeSystem;
  readonly callCodec: Codec;
  readonly eventCodec: Codec | null;
  encodeCall(name: string, args: unknown[]): Uint8Array;
  initialState(): Record<string, unknown> | null;
  methodNames(): string[];
}

// ---------------------------------------------------------------- client

/** The subprotocol of the Rust crate and the Python servers (browsers cannot offer it: "/" is not a token character). */
export const PROTOCOL: "hl/2";
/** The token-safe alias browsers offer by default; the server must accept it as hl/2. */
export const BROWSER_PROTOCOL: "hl.2";
export const MAX_CALLS_IN_FLIGHT: 256;
export const DEFAULT_MAX_MESSAGE_SIZE: number;

/** What `python -m hardlight schema --dts` generates as `<Service>Types`. */
export interface ServiceTypes {
  rpc: object;
  state: unknown;
  event: unknown;
}

export interface AnyServiceTypes extends ServiceTypes {
  rpc: Record<string, (...args: any[]) => Promise<any>>;
  state: Record<string, any> | null;
  event: any;
}

export interface ClientOptions {
  /** the subprotocol to offer (default "hl.2"; "hl/2" only where the WebSocket class allows it) */
  protocol?: string;
  /** ms per call before CallTimeout (default 30000; null: none) */
  callTimeout?: number | null;
  /** ms to wait for the upgrade (default 10000) */
  connectTimeout?: number;
  /** bytes a message may inflate to (default 16 MiB; past it the client closes) */
  maxInflatedSize?: number;
  /** compressed bytes a message may have (default 1 MiB; past it the client closes) */
  maxMessageSize?: number;
  /** a WebSocket class (default: globalThis.WebSocket) */
  WebSocket?: new (url: string, protocols?: string | string[]) => WebSocket;
}

export interface CloseInfo {
  code: number;
  reason: string;
  wasClean: boolean;
}

export interface HardLightEvent<E> {
  topic: Topic;
  /** the event's rkyv archive */
  payload: Uint8Array;
  /** decoded with the schema's event type (undefined if it has none or decoding failed) */
  value: E | undefined;
  /** the DecodeError when the payload did not decode */
  error: Error | null;
}

export class Client<T extends ServiceTypes = AnyServiceTypes> {
  static connect<T extends ServiceTypes = AnyServiceTypes>(
    url: string | URL,
    schema: Schema | CompiledSchema,
    options?: ClientOptions,
  ): Promise<Client<T>>;
  constructor(url: string | URL, schema: Schema | CompiledSchema, options?: ClientOptions);
  readonly url: string;
  readonly schema: CompiledSchema;
  /** calls by name (camelCase aliases of snake_case names too) */
  readonly rpc: T["rpc"] & Record<string, (...args: any[]) => Promise<any>>;
  /** the mirror of the server's connection state; a new object after each change */
  readonly state: T["state"];
  readonly opened: Promise<Client<T>>;
  readonly closed: Promise<CloseInfo>;
  readonly isOpen: boolean;
  readonly inFlight: number;
  readonly ignoredMessages: number;
  call(name: string, ...args: unknown[]): Promise<any>;
  callWith(name: string, args: unknown[], options?: { timeout?: number | null }): Promise<any>;
  onState(listener: (state: T["state"], changed: string[]) => void): () => void;
  onEvent(listener: (event: HardLightEvent<T["event"]>) => void): () => void;
  onClose(listener: (info: CloseInfo) => void): () => void;
  events(): AsyncIterableIterator<HardLightEvent<T["event"]>>;
  close(code?: number, reason?: string): Promise<CloseInfo>;
}

export function connect<T extends ServiceTypes = AnyServiceTypes>(
  url: string | URL,
  schema: Schema | CompiledSchema,
  options?: ClientOptions,
): Promise<Client<T>>;

// ---------------------------------------------------------------- errors

export class HardLightError extends Error {}
export class CodecError extends HardLightError {}
export class EncodeError extends CodecError {}
export class DecodeError extends CodecError {}
export class InflateError extends DecodeError {}
export class MessageTooLarge extends DecodeError {
  readonly limit: number;
}

export const RPC_HANDLER_ERRORS: readonly RpcHandlerErrorKind[];

export class RpcError extends HardLightError {
  static readonly kind: RpcHandlerErrorKind;
  readonly kind: RpcHandlerErrorKind;
  static forKind(kind: RpcHandlerErrorKind, message?: string): RpcError;
}
export class ClientNotConnected extends RpcError {
  readonly close: CloseInfo | null;
}
export class TooManyCallsInFlight extends RpcError {}
export class ClientEncodeError extends RpcError {}
export class ClientDecodeError extends RpcError {}
export class ServerEncodeError extends RpcError {}
export class ServerDecodeError extends RpcError {}
export class ClientCompressError extends RpcError {}
export class ClientDecompressError extends RpcError {}
export class ServerCompressError extends RpcError {}
export class ServerDecompressError extends RpcError {}
export class HandlerPanicked extends RpcError {}
export class CallTimeout extends ClientNotConnected {}
export class ConnectionRefused extends HardLightError {
  /** the HTTP status when known (never in browsers) */
  readonly status: number | null;
  readonly url: string | null;
}
export class ProtocolMismatch extends ConnectionRefused {}
