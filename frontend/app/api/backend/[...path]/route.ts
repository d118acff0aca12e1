// The pages' calls to the backend, made by this server on the signed-in user's behalf.
//
// The browser calls /api/backend/<path> on this origin; Better Auth's session cookie, which is
// HttpOnly, comes with the call, and this route hands its value to the backend as
// `Authorization: Bearer <signed token>` (see backend/app/auth.py). So the token is never in a
// page, a script or any storage a script can read, and the backend need not be reachable from
// the browser at all.
import { getSessionCookie } from "better-auth/cookies";

import { env, serverApiUrl } from "@/lib/env";
import { BodyTooLarge, maxRequestBytes, readBounded, tooLarge } from "@/lib/limits";

export const dynamic = "force-dynamic";
export const runtime = "nodejs";

// A chat turn may take several model calls: the slowest answer worth waiting for.
const BACKEND_TIMEOUT_MS = 120_000;
// What the backend may say that the page needs besides the body.
const PASSED_HEADERS = ["content-type", "retry-after", "x-next-offset", "x-next-before", "www-authenticate"];
// Only the backend's user-facing API is reachable through here.
const ROUTES = /^(todos(\/\d+(\/complete)?)?|chat|conversations(\/\d+\/messages)?)$/;

function refuse(status: number, detail: string): Response {
  return Response.json({ detail }, { status, headers: { "Cache-Control": "no-store" } });
}

// A request that changes something must come from this site's own pages: a page elsewhere cannot
// make the browser send the cookie with a JSON body (that needs CORS, which this route never
// grants), and the Origin check refuses the forms and beacons it could send.
function crossSite(request: Request): boolean {
  if (request.method === "GET") return false;
  const origin = request.headers.get("origin");
  const site = request.headers.get("sec-fetch-site");
  if (site && site !== "same-origin") return true;
  if (!origin) return false;
  const own = env("BETTER_AUTH_URL");
  return origin !== new URL(request.url).origin && (!own || origin !== new URL(own).origin);
}

async function forward(request: Request, { params }: { params: Promise<{ path: string[] }> }): Promise<Response> {
  const path = (await params).path.join("/");
  if (!ROUTES.test(path)) {
    return refuse(404, `there is no API route /api/${path}`);
  }
  if (crossSite(request)) {
    return refuse(403, "requests that change data must come from this site's own pages");
  }
  let body: Uint8Array | null;
  try {
    body = await readBounded(request, maxRequestBytes());
  } catch (error) {
    if (error instanceof BodyTooLarge) return tooLarge(error);
    throw error;
  }
  const token = getSessionCookie(request.headers);
  if (!token) {
    return refuse(401, "not signed in: sign in to get a session");
  }
  const base = serverApiUrl();
  if (!base) {
    return refuse(503, "the frontend does not know the backend's address: set BACKEND_URL or NEXT_PUBLIC_API_URL");
  }
  let answer: Response;
  try {
    answer = await fetch(`${base}/api/${path}${new URL(request.url).search}`, {
      method: request.method,
      headers: {
        Authorization: `Bearer ${token}`,
        ...(body ? { "Content-Type": "application/json" } : {}),
      },
      body: body && body.byteLength > 0 ? (body as BodyInit) : undefined,
      cache: "no-store",
      signal: AbortSignal.timeout(BACKEND_TIMEOUT_MS),
    });
  } catch {
    return refuse(502, "the backend cannot be reached; is it running?");
  }
  const headers = new Headers({ "Cache-Control": "no-store" });
  for (const name of PASSED_HEADERS) {
    const value = answer.headers.get(name);
    if (value !== null) headers.set(name, value);
  }
  return new Response(answer.status === 204 ? null : answer.body, { status: answer.status, headers });
}

export { forward as DELETE, forward as GET, forward as PATCH, forward as POST };
