// The signed-in user for server-rendered pages, with what the browser needs to call the backend.
import { getSessionCookie } from "better-auth/cookies";
import { headers } from "next/headers";
import { redirect } from "next/navigation";

import { getAuth, migrate } from "./auth";
import { browserApiUrl } from "./env";

export type PageSession = {
  name: string;
  email: string;
  // The signed session token, exactly as Better Auth's session cookie holds it; the browser
  // sends it to the backend as `Authorization: Bearer <token>` (see backend/app/auth.py).
  token: string;
  apiUrl: string;
};

export async function currentSession(): Promise<PageSession | null> {
  const requestHeaders = await headers();
  if (!getSessionCookie(requestHeaders)) {
    return null;
  }
  await migrate();
  const session = await getAuth().api.getSession({ headers: requestHeaders });
  const token = getSessionCookie(requestHeaders);
  if (!session || !token) {
    return null;
  }
  return { name: session.user.name, email: session.user.email, token, apiUrl: browserApiUrl() };
}

export async function requireSession(): Promise<PageSession> {
  const session = await currentSession();
  if (!session) {
    redirect("/sign-in");
  }
  return session;
}
