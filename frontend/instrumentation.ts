// Runs once when the server starts, before it serves: the client address for the sign-in rate
// limit (lib/client-address.ts), then Better Auth's tables, prepared in the background.
export async function register(): Promise<void> {
  if (process.env.NEXT_RUNTIME !== "nodejs") {
    return;
  }
  const { installClientAddress } = await import("./lib/client-address");
  installClientAddress();
  if (!process.env["DATABASE_URL"]) {
    return;
  }
  const { migrateInBackground } = await import("./lib/auth");
  migrateInBackground();
}
