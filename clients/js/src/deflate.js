// Raw DEFLATE (RFC 1951) as HardLight uses it: one complete stream per message, via
// the platform's CompressionStream / DecompressionStream("deflate-raw") (browsers,
// Node >= 20). Inflation is bounded while it runs: a deflate bomb costs at most
// maxSize bytes before it is refused.

import { DecodeError } from "./errors.js";

export const DEFAULT_MAX_INFLATED_SIZE = 16 * 1024 * 1024;
/** Messages up to this many bytes go out as one stored block (deflate cannot shrink them). */
export const STORED_BELOW = 32;

/** The payload is not exactly one complete raw DEFLATE stream. */
export class InflateError extends DecodeError {}

/** The message inflates to more than the limit. */
export class MessageTooLarge extends DecodeError {
  constructor(message, limit) {
    super(message);
    this.limit = limit;
  }
}

function stored(data) {
  const n = data.length;
  const out = new Uint8Array(5 + n);
  out[0] = 0x01; // BFINAL=1, BTYPE=00 (stored)
  out[1] = n & 0xff;
  out[2] = n >> 8;
  out[3] = ~n & 0xff;
  out[4] = (~n >> 8) & 0xff;
  out.set(data, 5);
  return out;
}

async function drain(readable, limit) {
  const reader = readable.getReader();
  const chunks = [];
  let total = 0;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    total += value.length;
    if (total > limit) {
      reader.cancel().catch(() => {});
      throw new MessageTooLarge(`message inflates to more than ${limit} bytes`, limit);
    }
    chunks.push(value);
  }
  if (chunks.length === 1) return chunks[0];
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

function pump(stream, data) {
  const writer = stream.writable.getWriter();
  writer.write(data).catch(() => {});
  writer.close().catch(() => {});
}

/** Compress bytes as a fresh raw DEFLATE stream (the platform's default level). */
export async function deflateRaw(data) {
  if (data.length <= STORED_BELOW) return stored(data);
  const cs = new CompressionStream("deflate-raw");
  pump(cs, data);
  return drain(cs.readable, Infinity);
}

/**
 * Inflate one raw DEFLATE stream, refusing output larger than maxSize.
 * Throws InflateError for corrupt, truncated or trailing data and MessageTooLarge.
 */
export async function inflateRaw(data, maxSize = DEFAULT_MAX_INFLATED_SIZE) {
  if (data.length >= 5 && data[0] === 0x01) {
    // one final stored block (small messages, level 0): no inflater needed
    const len = data[1] | (data[2] << 8);
    const check = data[3] | (data[4] << 8);
    if ((len ^ check) === 0xffff && data.length === 5 + len) {
      if (len > maxSize) throw new MessageTooLarge(`message inflates to more than ${maxSize} bytes`, maxSize);
      return data.slice(5);
    }
  }
  const ds = new DecompressionStream("deflate-raw");
  pump(ds, data);
  try {
    return await drain(ds.readable, maxSize);
  } catch (e) {
    if (e instanceof MessageTooLarge) throw e;
    throw new InflateError(`corrupt, truncated or trailing deflate data (${e.message})`);
  }
}
