// Liveness/readiness endpoint used by the container HEALTHCHECK.
// Always answers 200 while the frontend itself works; the backend's state is
// reported in the body, never turned into a failure of this endpoint.

export const dynamic = "force-dynamic";
export const runtime = "nodejs";

type BackendStatus = "ok" | "unreachable" | "not configured";

const BACKEND_TIMEOUT_MS = 1000;

// Read variables at request time. A computed key keeps the bundler from inlining
// NEXT_PUBLIC_* values at build time: the container's runtime environment decides.
function env(name: string): string | undefined {
  const value = process.env[name];
  return value && value.trim() !== "" ? value.trim() : undefined;
}

async function checkBackend(): Promise<BackendStatus> {
  const base = env("NEXT_PUBLIC_API_URL") ?? env("BACKEND_URL");
  if (!base) return "not configured";
  try {
    const res = await fetch(`${base.replace(/\/+$/, "")}/health`, {
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
