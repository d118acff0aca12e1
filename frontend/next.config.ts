import type { NextConfig } from "next";

// Headers on every response. The pages' own Content Security Policy, which needs a nonce per
// request, comes from proxy.ts; what proxy.ts does not see (API routes, static files) gets the
// strictest policy here, as nothing in them is meant to run or to be framed.
const SECURITY_HEADERS = [
  { key: "X-Content-Type-Options", value: "nosniff" },
  // Clickjacking: no page may be framed, here for old browsers and as frame-ancestors in the CSP.
  { key: "X-Frame-Options", value: "DENY" },
  { key: "Referrer-Policy", value: "strict-origin-when-cross-origin" },
  { key: "Permissions-Policy", value: "camera=(), microphone=(), geolocation=(), payment=()" },
  { key: "Cross-Origin-Opener-Policy", value: "same-origin" },
  // Browsers take this only from an https response and ignore it over plain http, so it is safe
  // to send always; behind https it keeps the browser from ever using http for this host.
  { key: "Strict-Transport-Security", value: "max-age=31536000" },
];
const NOT_A_PAGE_CSP = { key: "Content-Security-Policy", value: "default-src 'none'; frame-ancestors 'none'" };

const nextConfig: NextConfig = {
  // Self-contained server (server.js + traced node_modules) for the container image.
  output: "standalone",
  // No image optimizer: keeps `sharp` (~30 MB of native libs) out of the image.
  images: { unoptimized: true },
  outputFileTracingExcludes: {
    "*": ["node_modules/sharp/**", "node_modules/@img/**"],
  },
  // The revision of the sources when the build passes one (NEXT_BUILD_ID, from `cargo xtask
  // build`), so that the same commit gives the same files; else Next.js picks a random id.
  generateBuildId: async () => process.env.NEXT_BUILD_ID || null,
  poweredByHeader: false,
  reactStrictMode: true,
  async headers() {
    return [
      { source: "/:path*", headers: SECURITY_HEADERS },
      { source: "/api/:path*", headers: [NOT_A_PAGE_CSP] },
      { source: "/_next/static/:path*", headers: [NOT_A_PAGE_CSP] },
    ];
  },
};

export default nextConfig;
