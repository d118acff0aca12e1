// Runs once when the server starts: prepares Better Auth's tables in the background.
export async function register(): Promise<void> {
  if (process.env.NEXT_RUNTIME !== "nodejs" || !process.env["DATABASE_URL"]) {
    return;
  }
  const { migrateInBackground } = await import("./lib/auth");
  migrateInBackground();
}
