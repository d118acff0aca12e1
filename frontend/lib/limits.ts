// The bound on request bodies of the frontend's own routes (/api/auth, /api/backend).
//
// A body is refused with a 413 before it is read when its declared Content-Length is over the
// limit, and as soon as it passes the limit when it comes in chunks: the server never holds more
// than MAX_REQUEST_BYTES of one request. The backend applies the same variable to its own routes.

import { env } from "./env";

export const DEFAULT_MAX_REQUEST_BYTES = 64 * 1024;
const MIN_REQUEST_BYTES = 1024;

// MAX_REQUEST_BYTES, or the default when unset; a value that is not a whole number of at least
// 1024 is a configuration error, reported with the variable's name.
export function maxRequestBytes(): number {
  const raw = env("MAX_REQUEST_BYTES");
  if (raw === undefined) return DEFAULT_MAX_REQUEST_BYTES;
  const value = Number(raw);
  if (!/^\d+$/.test(raw) || !Number.isSafeInteger(value) || value < MIN_REQUEST_BYTES) {
    throw new Error(`MAX_REQUEST_BYTES must be a whole number of bytes, at least ${MIN_REQUEST_BYTES}`);
  }
  return value;
}

export class BodyTooLarge extends Error {
  constructor(public readonly limit: number) {
    super(`the request body is larger than ${limit} bytes, the most this service accepts (MAX_REQUEST_BYTES); send less`);
  }
}

// The whole body, at most `limit` bytes of it; throws BodyTooLarge past that. Null when the
// request has no body.
export async function readBounded(request: Request, limit: number): Promise<Uint8Array | null> {
  const declared = request.headers.get("content-length");
  if (declared !== null && Number(declared) > limit) {
    throw new BodyTooLarge(limit);
  }
  if (!request.body) return null;
  const reader = request.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel().catch(() => {});
      throw new BodyTooLarge(limit);
    }
    chunks.push(value);
  }
  const body = new Uint8Array(size);
  let at = 0;
  for (const chunk of chunks) {
    body.set(chunk, at);
    at += chunk.byteLength;
  }
  return body;
}

// The 413 answer: `detail` as the backend words its errors, `message` as Better Auth's client
// reads them.
export function tooLarge(error: BodyTooLarge): Response {
  return Response.json({ detail: error.message, message: error.message }, { status: 413 });
}
