// The browser's calls to the backend, authenticated with the user's session token.

export class ApiError extends Error {
  constructor(
    public readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export type Todo = {
  id: number;
  title: string;
  description: string | null;
  completed: boolean;
  created_at: string;
  updated_at: string;
};

export type ChatTurn = {
  conversation_id: number;
  reply: string;
  actions: { tool: string; arguments: Record<string, unknown>; ok: boolean; result: unknown }[];
};

export type ChatMessage = { id: number; role: "user" | "assistant"; content: string; created_at: string };

export type Backend = { apiUrl: string; token: string };

export async function call<T>(backend: Backend, path: string, init: RequestInit = {}): Promise<T> {
  let response: Response;
  try {
    response = await fetch(`${backend.apiUrl}${path}`, {
      ...init,
      headers: {
        Authorization: `Bearer ${backend.token}`,
        ...(init.body ? { "Content-Type": "application/json" } : {}),
      },
      cache: "no-store",
    });
  } catch {
    throw new ApiError(0, `The backend at ${backend.apiUrl} cannot be reached. Is it running?`);
  }
  if (response.status === 204) {
    return undefined as T;
  }
  const body: unknown = await response.json().catch(() => null);
  if (!response.ok) {
    const detail = (body as { detail?: unknown } | null)?.detail;
    throw new ApiError(response.status, typeof detail === "string" ? detail : `The backend answered HTTP ${response.status}.`);
  }
  return body as T;
}
