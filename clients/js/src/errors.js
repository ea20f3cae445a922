// Typed errors, named as in the Python port (hardlight_core._errors).

/** Base class of every error this module throws. */
export class HardLightError extends Error {
  constructor(message) {
    super(message);
    this.name = new.target.name;
  }
}

/** A value does not fit its declared type, or bytes are not a valid archive. */
export class CodecError extends HardLightError {}
/** A value cannot be archived as its declared type. */
export class EncodeError extends CodecError {}
/** Bytes are not a valid rkyv archive of the expected type (rkyv's from_bytes would refuse them). */
export class DecodeError extends CodecError {}

/** The reference's RpcHandlerError variants, in tag order. */
export const RPC_HANDLER_ERRORS = Object.freeze([
  "ClientNotConnected",
  "TooManyCallsInFlight",
  "ClientEncodeError",
  "ClientDecodeError",
  "ServerEncodeError",
  "ServerDecodeError",
  "ClientCompressError",
  "ClientDecompressError",
  "ServerCompressError",
  "ServerDecompressError",
  "HandlerPanicked",
]);

/** A call failed; `kind` is the wire-level RpcHandlerError variant's name. */
export class RpcError extends HardLightError {
  static kind = "HandlerPanicked";
  constructor(message) {
    super(message || new.target.kind);
    this.kind = new.target.kind;
  }

  /** The error (an instance of the matching subclass) for a wire error kind. */
  static forKind(kind, message) {
    const cls = BY_KIND[kind];
    if (!cls) throw new TypeError(`unknown RpcHandlerError ${kind}`);
    return new cls(message);
  }
}

/** The connection is not open, or it closed before the answer came. */
export class ClientNotConnected extends RpcError {
  static kind = "ClientNotConnected";
  constructor(message, close = null) {
    super(message);
    /** {code, reason} of the close, when the connection closed under the call */
    this.close = close;
  }
}
/** All 256 call ids are in flight; nothing was sent. */
export class TooManyCallsInFlight extends RpcError {
  static kind = "TooManyCallsInFlight";
}
/** The arguments do not encode as the method's declared types; nothing was sent. */
export class ClientEncodeError extends RpcError {
  static kind = "ClientEncodeError";
}
/** The server's answer does not decode as the method's return type. */
export class ClientDecodeError extends RpcError {
  static kind = "ClientDecodeError";
}
/** The server could not encode the handler's return value. */
export class ServerEncodeError extends RpcError {
  static kind = "ServerEncodeError";
}
/** The server could not decode the call (unknown method, bad arguments). */
export class ServerDecodeError extends RpcError {
  static kind = "ServerDecodeError";
}
/** The call could not be compressed. */
export class ClientCompressError extends RpcError {
  static kind = "ClientCompressError";
}
/** The answer could not be inflated. */
export class ClientDecompressError extends RpcError {
  static kind = "ClientDecompressError";
}
/** The server could not compress its answer. */
export class ServerCompressError extends RpcError {
  static kind = "ServerCompressError";
}
/** The server could not inflate the call. */
export class ServerDecompressError extends RpcError {
  static kind = "ServerDecompressError";
}
/** The server's handler raised (Rust: panicked) while serving the call. */
export class HandlerPanicked extends RpcError {
  static kind = "HandlerPanicked";
}

/**
 * No answer arrived within the call's timeout (the id stays reserved until one does).
 * A ClientNotConnected, as in the Python port: to the caller the outcome is unknown.
 */
export class CallTimeout extends ClientNotConnected {
  static kind = "ClientNotConnected";
}

/**
 * The WebSocket could not be opened: connection refused, TLS failure, or the server
 * refused the upgrade (403 origin not allowed, 400, 503, ...). Browsers do not show
 * scripts the HTTP status of a failed upgrade, so `status` is null there.
 */
export class ConnectionRefused extends HardLightError {
  constructor(message, { status = null, url = null } = {}) {
    super(message);
    this.status = status;
    this.url = url;
  }
}

/** The server answered the upgrade without the hl/2 subprotocol. */
export class ProtocolMismatch extends ConnectionRefused {}

const BY_KIND = {
  ClientNotConnected,
  TooManyCallsInFlight,
  ClientEncodeError,
  ClientDecodeError,
  ServerEncodeError,
  ServerDecodeError,
  ClientCompressError,
  ClientDecompressError,
  ServerCompressError,
  ServerDecompressError,
  HandlerPanicked,
};
