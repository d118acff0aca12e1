"use client";

import { type FormEvent, useCallback, useEffect, useState } from "react";

import { call, page, type Todo } from "@/lib/api";
import { useApiFailure } from "@/lib/use-api-failure";

type Filter = "all" | "pending" | "completed";
const FILTERS: Filter[] = ["all", "pending", "completed"];
// Todos per page: the server's default maximum (LIST_PAGE_SIZE_MAX).
const PAGE_SIZE = 200;

export default function TodoApp() {
  const [todos, setTodos] = useState<Todo[] | null>(null);
  const [next, setNext] = useState<string | null>(null);
  const [filter, setFilter] = useState<Filter>("all");
  const [title, setTitle] = useState("");
  const [error, setError] = useState<string | null>(null);

  const fail = useApiFailure(setError);

  const load = useCallback(async () => {
    try {
      const first = await page<Todo>(`/todos?status=${filter}&limit=${PAGE_SIZE}`, "x-next-offset");
      setTodos(first.items);
      setNext(first.next);
      setError(null);
    } catch (e) {
      fail(e);
    }
  }, [filter, fail]);

  async function more() {
    if (next === null) return;
    try {
      const following = await page<Todo>(`/todos?status=${filter}&limit=${PAGE_SIZE}&offset=${next}`, "x-next-offset");
      setTodos((shown) => [...(shown ?? []), ...following.items]);
      setNext(following.next);
    } catch (e) {
      fail(e);
    }
  }

  useEffect(() => {
    void load();
  }, [load]);

  async function act(work: () => Promise<unknown>) {
    try {
      await work();
      await load();
    } catch (e) {
      fail(e);
    }
  }

  async function add(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const text = title.trim();
    if (!text) return;
    await act(() => call("/todos", { method: "POST", body: JSON.stringify({ title: text }) }));
    setTitle("");
  }

  return (
    <main className="container">
      <h1>Your todos</h1>
      <form className="row" onSubmit={add}>
        <input
          aria-label="New todo"
          placeholder="What needs doing?"
          value={title}
          maxLength={200}
          onChange={(e) => setTitle(e.target.value)}
        />
        <button type="submit">Add</button>
      </form>

      <div className="filters" role="group" aria-label="Filter">
        {FILTERS.map((f) => (
          <button key={f} type="button" aria-pressed={filter === f} onClick={() => setFilter(f)}>
            {f[0].toUpperCase() + f.slice(1)}
          </button>
        ))}
      </div>

      {error && (
        <p role="alert" className="error">
          {error}
        </p>
      )}

      {todos === null ? (
        <p className="muted">Loading…</p>
      ) : todos.length === 0 ? (
        <p className="muted">{filter === "all" ? "Nothing to do yet: add a todo above, or ask the chat." : `No ${filter} todos.`}</p>
      ) : (
        <ul className="todos" aria-label="Todos">
          {todos.map((todo) => (
            <li key={todo.id} className={todo.completed ? "done" : undefined}>
              <label>
                <input
                  type="checkbox"
                  checked={todo.completed}
                  aria-label={`Completed: ${todo.title}`}
                  onChange={() =>
                    act(() =>
                      call(`/todos/${todo.id}`, {
                        method: "PATCH",
                        body: JSON.stringify({ completed: !todo.completed }),
                      }),
                    )
                  }
                />
                <span className="title">{todo.title}</span>
              </label>
              <button
                type="button"
                className="link danger"
                aria-label={`Delete ${todo.title}`}
                onClick={() => act(() => call(`/todos/${todo.id}`, { method: "DELETE" }))}
              >
                Delete
              </button>
            </li>
          ))}
        </ul>
      )}
      {next !== null && (
        <button type="button" className="link" onClick={more}>
          Show more
        </button>
      )}
    </main>
  );
}
