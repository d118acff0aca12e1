import Link from "next/link";
import { redirect } from "next/navigation";

import { currentSession } from "@/lib/session";

export const dynamic = "force-dynamic";

export default async function Home() {
  if (await currentSession()) {
    redirect("/todos");
  }
  return (
    <main className="container">
      <h1>Todo Chatbot</h1>
      <p>
        Manage your todo list in plain language: ask the assistant to add, list, complete or
        delete tasks, and it keeps your list up to date.
      </p>
      <p className="row">
        <Link className="button" href="/sign-up">
          Create an account
        </Link>
        <Link href="/sign-in">Sign in</Link>
      </p>
      <p className="muted">
        Service status: <a href="/api/health">/api/health</a>
      </p>
    </main>
  );
}
