"use client";

import Link from "next/link";
import { usePathname, useRouter } from "next/navigation";

import { authClient } from "@/lib/auth-client";

export default function Nav({ email }: { email: string }) {
  const router = useRouter();
  const path = usePathname();

  async function signOut() {
    await authClient.signOut();
    router.replace("/sign-in");
    router.refresh();
  }

  return (
    <header className="nav">
      <strong>Todo Chatbot</strong>
      <nav>
        <Link href="/todos" aria-current={path === "/todos" ? "page" : undefined}>
          Todos
        </Link>
        <Link href="/chat" aria-current={path === "/chat" ? "page" : undefined}>
          Chat
        </Link>
      </nav>
      <span className="muted">{email}</span>
      <button type="button" className="link" onClick={signOut}>
        Sign out
      </button>
    </header>
  );
}
