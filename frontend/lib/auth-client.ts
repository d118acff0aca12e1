"use client";
// Better Auth in the browser: same origin, so its default base (/api/auth) is right.
import { createAuthClient } from "better-auth/react";

export const authClient = createAuthClient();
