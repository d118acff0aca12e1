import type { Metadata } from "next";
import type { ReactNode } from "react";
import "./globals.css";

// Every page is rendered per request: its scripts carry the nonce of that request's Content
// Security Policy (proxy.ts), which a page rendered at build time could not.
export const dynamic = "force-dynamic";

export const metadata: Metadata = {
  title: "Todo Chatbot",
  description: "Manage your todos by chatting with an AI assistant.",
};

export default function RootLayout({ children }: { children: ReactNode }) {
  return (
    <html lang="en">
      <body>{children}</body>
    </html>
  );
}
