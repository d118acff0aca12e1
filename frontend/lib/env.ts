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

// The backend's address as this server reaches it: BACKEND_URL when set (on a compose network,
// http://backend:8000), else NEXT_PUBLIC_API_URL, the spec's "Backend API URL". Only this server
// calls the backend: the browser's calls go through app/api/backend/.
export function serverApiUrl(): string | undefined {
  return (env("BACKEND_URL") ?? env("NEXT_PUBLIC_API_URL"))?.replace(/\/+$/, "");
}
