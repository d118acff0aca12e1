// Better Auth on the server: email and password accounts, sessions in PostgreSQL.
//
// Its tables (user, session, account, verification) live in the same database as the todos
// (DATABASE_URL). The backend authenticates API calls by looking the session token up in that
// `session` table after checking its signature with the shared BETTER_AUTH_SECRET; see
// backend/app/auth.py for the scheme and why it was chosen.
//
// Nothing here runs at build time: `next build` has no secrets and no database, so the
// instance is created on first use, from the environment of the running container.
import { betterAuth } from "better-auth";
import { getMigrations } from "better-auth/db/migration";
import { Pool } from "pg";

import { requireEnv } from "./env";

const RETRY_MS = 2000;

function createAuth() {
  // pg does not know SQLAlchemy's driver suffix, which the backend accepts in the same variable.
  const connectionString = requireEnv(
    "DATABASE_URL",
    "set it to the PostgreSQL connection string the backend uses too",
  ).replace(/^postgresql\+psycopg:\/\//, "postgresql://");
  return betterAuth({
    appName: "Todo Chatbot",
    baseURL: requireEnv("BETTER_AUTH_URL", "set it to the frontend's URL as the browser shows it, e.g. http://localhost:3000"),
    secret: requireEnv("BETTER_AUTH_SECRET", "set it to the secret the backend holds too (32 characters or more)"),
    database: new Pool({ connectionString, max: 5, connectionTimeoutMillis: 5000 }),
    emailAndPassword: { enabled: true, autoSignIn: true, minPasswordLength: 8 },
    telemetry: { enabled: false },
  });
}

type Auth = ReturnType<typeof createAuth>;

let instance: Auth | undefined;
let migrated: Promise<void> | undefined;

export function getAuth(): Auth {
  instance ??= createAuth();
  return instance;
}

// Creates or completes Better Auth's tables; only what is missing is added, so running it
// on every start is safe. A failure (the database not up yet) is retried by the next caller.
export function migrate(): Promise<void> {
  migrated ??= (async () => {
    const { runMigrations } = await getMigrations(getAuth().options);
    await runMigrations();
  })().catch((error: unknown) => {
    migrated = undefined;
    throw error;
  });
  return migrated;
}

// At server start: keep trying in the background until the tables exist, without holding up
// the server (its health check must answer while the database is still starting).
export function migrateInBackground(): void {
  migrate().then(
    () => console.log("better-auth: database tables are ready"),
    (error: unknown) => {
      console.error(`better-auth: cannot prepare the database tables yet (${describe(error)}); retrying`);
      setTimeout(migrateInBackground, RETRY_MS).unref();
    },
  );
}

function describe(error: unknown): string {
  // Driver errors can quote the connection string; the message and code are enough.
  if (error && typeof error === "object") {
    const { code, message } = error as { code?: string; message?: string };
    return [code, message?.replace(/postgres(ql)?:\/\/\S+/g, "postgresql://…")].filter(Boolean).join(": ");
  }
  return String(error);
}
