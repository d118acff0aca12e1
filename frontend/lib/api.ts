// The pages' calls to the backend, through this frontend's own server (app/api/backend/): the
// browser sends its HttpOnly session cookie, never a token a script could read.

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

// One page of a list route: the items and, when there are more, where the next page starts.
export type Page<T> = { items: T[]; next: string | null };

const BASE = "/api/backend";

async function send(path: string, init: RequestInit): Promise<Response> {
  let response: Response;
  try {
    response = await fetch(`${BASE}${path}`, {
      ...init,
      headers: init.body ? { "Content-Type": "application/json" } : {},
      credentials: "same-origin",
      cache: "no-store",
    });
  } catch {
    throw new ApiError(0, "The server cannot be reached. Is it running?");
  }
  if (!response.ok) {
    const body: unknown = await response.json().catch(() => null);
    const detail = (body as { detail?: unknown } | null)?.detail;
    throw new ApiError(response.status, typeof detail === "string" ? detail : `The server answered HTTP ${response.status}.`);
  }
  return response;
}

export async function call<T>(path: string, init: RequestInit = {}): Promise<T> {
  const response = await send(path, init);
  if (response.status === 204) {
    return undefined as T;
  }
  return (await response.json()) as T;
}

// A list route's page; `cursor` names the header that says where the next page starts
// (X-Next-Offset or X-Next-Before).
export async function page<T>(path: string, cursor: "x-next-offset" | "x-next-before"): Promise<Page<T>> {
  const response = await send(path, {});
  return { items: (await response.json()) as T[], next: response.headers.get(cursor) };
}
