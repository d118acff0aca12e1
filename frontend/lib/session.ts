// The signed-in user for server-rendered pages: a name and an email to show, nothing more. The
// session token stays in Better Auth's HttpOnly cookie; the pages' API calls carry it through
// this server (app/api/backend/), so it is never part of a page.
import { getSessionCookie } from "better-auth/cookies";
import { headers } from "next/headers";
import { redirect } from "next/navigation";

import { getAuth, migrate } from "./auth";

export type PageSession = {
  name: string;
  email: string;
};

export async function currentSession(): Promise<PageSession | null> {
  const requestHeaders = await headers();
  if (!getSessionCookie(requestHeaders)) {
    return null;
  }
  await migrate();
  const session = await getAuth().api.getSession({ headers: requestHeaders });
  if (!session) {
    return null;
  }
  return { name: session.user.name, email: session.user.email };
}

export async function requireSession(): Promise<PageSession> {
  const session = await currentSession();
  if (!session) {
    redirect("/sign-in");
  }
  return session;
}
