"use client";
// How the todo and chat pages answer a failed backend call: an expired or missing session sends
// the user to sign in again, any other failure is shown as the page's error line.
import { useRouter } from "next/navigation";
import { useCallback } from "react";

import { ApiError } from "./api";

export function useApiFailure(setError: (message: string) => void): (e: unknown) => void {
  const router = useRouter();
  return useCallback(
    (e: unknown) => {
      if (e instanceof ApiError && e.status === 401) {
        router.replace("/sign-in");
        return;
      }
      setError(e instanceof Error ? e.message : String(e));
    },
    [router, setError],
  );
}
