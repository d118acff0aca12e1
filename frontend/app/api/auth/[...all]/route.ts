// Better Auth's endpoints (/api/auth/sign-up/email, /sign-in/email, /get-session, /sign-out, ...).
import { getAuth, migrate } from "@/lib/auth";
import { BodyTooLarge, maxRequestBytes, readBounded, tooLarge } from "@/lib/limits";

export const dynamic = "force-dynamic";
export const runtime = "nodejs";

async function handle(request: Request): Promise<Response> {
  // The body is read here, bounded, before Better Auth reads it whole.
  let body: Uint8Array | null;
  try {
    body = await readBounded(request, maxRequestBytes());
  } catch (error) {
    if (error instanceof BodyTooLarge) return tooLarge(error);
    throw error;
  }
  try {
    await migrate();
  } catch {
    return Response.json(
      { message: "The account database is not reachable yet; try again in a moment." },
      { status: 503 },
    );
  }
  // The same request, with the bytes already read; the framing headers described the original.
  const headers = new Headers(request.headers);
  headers.delete("content-length");
  headers.delete("transfer-encoding");
  const bounded = new Request(request.url, {
    method: request.method,
    headers,
    body: body && body.byteLength > 0 ? (body as BodyInit) : undefined,
  });
  return withoutTokens(await getAuth().handler(bounded));
}

// Better Auth's JSON answers (sign-in, sign-up, get-session) carry the session token for clients
// that send it as a bearer token; these pages never do, and a script must never see it. The
// cookie, set by the same answer, is HttpOnly.
async function withoutTokens(response: Response): Promise<Response> {
  if (!(response.headers.get("content-type") ?? "").includes("application/json")) {
    return response;
  }
  const text = await response.text();
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return new Response(text, response);
  }
  const scrub = (value: unknown) => {
    if (value && typeof value === "object" && !Array.isArray(value)) delete (value as { token?: unknown }).token;
  };
  scrub(body);
  scrub((body as { session?: unknown } | null)?.session);
  const headers = new Headers(response.headers);
  headers.delete("content-length");
  return new Response(JSON.stringify(body), { status: response.status, statusText: response.statusText, headers });
}

export { handle as GET, handle as POST };
