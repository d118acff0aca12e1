// Liveness/readiness endpoint used by the container HEALTHCHECK.
// Always answers 200 while the frontend itself works; the backend's state is
// reported in the body, never turned into a failure of this endpoint.

import { env, serverApiUrl } from "@/lib/env";

export const dynamic = "force-dynamic";
export const runtime = "nodejs";

type BackendStatus = "ok" | "unreachable" | "not configured";

const BACKEND_TIMEOUT_MS = 1000;

async function checkBackend(): Promise<BackendStatus> {
  // The address this server reaches the backend at (BACKEND_URL, else NEXT_PUBLIC_API_URL).
  const base = serverApiUrl();
  if (!base) return "not configured";
  try {
    const res = await fetch(`${base}/health`, {
      cache: "no-store",
      signal: AbortSignal.timeout(BACKEND_TIMEOUT_MS),
    });
    return res.ok ? "ok" : "unreachable";
  } catch {
    return "unreachable";
  }
}

export async function GET(): Promise<Response> {
  const backend = await checkBackend();
  return Response.json(
    {
      status: "ok",
      version: env("APP_VERSION") ?? "0.0.0",
      backend,
    },
    { status: 200, headers: { "Cache-Control": "no-store" } },
  );
}
