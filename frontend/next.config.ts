import type { NextConfig } from "next";

const nextConfig: NextConfig = {
  // Self-contained server (server.js + traced node_modules) for the container image.
  output: "standalone",
  // No image optimizer: keeps `sharp` (~30 MB of native libs) out of the image.
  images: { unoptimized: true },
  outputFileTracingExcludes: {
    "*": ["node_modules/sharp/**", "node_modules/@img/**"],
  },
  poweredByHeader: false,
  reactStrictMode: true,
};

export default nextConfig;
