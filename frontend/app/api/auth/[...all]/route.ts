// Better Auth's endpoints (/api/auth/sign-up/email, /sign-in/email, /get-session, /sign-out, ...).
import { getAuth, migrate } from "@/lib/auth";

export const dynamic = "force-dynamic";
export const runtime = "nodejs";

async function handle(request: Request): Promise<Response> {
  try {
    await migrate();
  } catch {
    return Response.json(
      { message: "The account database is not reachable yet; try again in a moment." },
      { status: 503 },
    );
  }
  return getAuth().handler(request);
}

export { handle as GET, handle as POST };
