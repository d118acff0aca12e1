// Server-side reading of the container's environment at request time.
//
// A computed key keeps the bundler from inlining values at build time (it replaces literal
// `process.env.NEXT_PUBLIC_*` reads): the image is built once and configured where it runs.

export function env(name: string): string | undefined {
  const value = process.env[name];
  return value && value.trim() !== "" ? value.trim() : undefined;
}

export function requireEnv(name: string, hint: string): string {
  const value = env(name);
  if (!value) {
    throw new Error(`${name} is not set: ${hint}`);
  }
  return value;
}

// The backend's address as the browser reaches it (NEXT_PUBLIC_API_URL), without a trailing slash.
export function browserApiUrl(): string {
  return requireEnv("NEXT_PUBLIC_API_URL", "set it to the backend's URL as the browser reaches it, e.g. http://localhost:8000").replace(/\/+$/, "");
}

// The backend's address from inside the frontend's server: BACKEND_URL when the two differ (in
// a compose network the browser uses localhost:8000, this server uses http://backend:8000),
// else the browser's address.
export function serverApiUrl(): string | undefined {
  return (env("BACKEND_URL") ?? env("NEXT_PUBLIC_API_URL"))?.replace(/\/+$/, "");
}
