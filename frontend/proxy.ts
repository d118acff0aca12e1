// The Content Security Policy of every page, with a fresh nonce per request.
//
// Next.js reads the nonce from the request's CSP header and puts it on every script and style it
// renders, so the pages run with no inline script or style allowed that this server did not
// write. Pages are rendered per request (app/layout.tsx), which a nonce needs. The other security
// headers, and a CSP for what is not a page, come from next.config.ts.
//
// API routes are left out on purpose: with a proxy in front of them, Next.js buffers their
// request bodies itself (up to proxyClientMaxBodySize), before app/api's own bound applies.
import { type NextRequest, NextResponse } from "next/server";

function policy(nonce: string): string {
  const dev = process.env.NODE_ENV === "development";
  return [
    "default-src 'self'",
    // 'strict-dynamic': scripts the nonce'd ones load (Next's chunks) may run; nothing else.
    `script-src 'self' 'nonce-${nonce}' 'strict-dynamic'${dev ? " 'unsafe-eval'" : ""}`,
    `style-src 'self' 'nonce-${nonce}'`,
    "img-src 'self' data: blob:",
    "font-src 'self'",
    // The pages talk to this origin only: the backend is reached through app/api/backend/.
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
  ].join("; ");
}

export function proxy(request: NextRequest): NextResponse {
  const nonce = Buffer.from(crypto.randomUUID()).toString("base64");
  const csp = policy(nonce);
  const headers = new Headers(request.headers);
  headers.set("content-security-policy", csp);
  const response = NextResponse.next({ request: { headers } });
  response.headers.set("content-security-policy", csp);
  return response;
}

export const config = {
  matcher: [
    {
      source: "/((?!api/|_next/static|_next/image).*)",
      missing: [
        { type: "header", key: "next-router-prefetch" },
        { type: "header", key: "purpose", value: "prefetch" },
      ],
    },
  ],
};
