"use client";

import { type FormEvent, useCallback, useEffect, useState } from "react";

import { type Backend, call, type Todo } from "@/lib/api";
import { useApiFailure } from "@/lib/use-api-failure";

type Filter = "all" | "pending" | "completed";
const FILTERS: Filter[] = ["all", "pending", "completed"];

export default function TodoApp({ backend }: { backend: Backend }) {
  const [todos, setTodos] = useState<Todo[] | null>(null);
  const [filter, setFilter] = useState<Filter>("all");
  const [title, setTitle] = useState("");
  const [error, setError] = useState<string | null>(null);

  const fail = useApiFailure(setError);

  const load = useCallback(async () => {
    try {
      setTodos(await call<Todo[]>(backend, `/api/todos?status=${filter}`));
      setError(null);
    } catch (e) {
      fail(e);
    }
  }, [backend, filter, fail]);

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
    await act(() => call(backend, "/api/todos", { method: "POST", body: JSON.stringify({ title: text }) }));
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
                      call(backend, `/api/todos/${todo.id}`, {
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
                onClick={() => act(() => call(backend, `/api/todos/${todo.id}`, { method: "DELETE" }))}
              >
                Delete
              </button>
            </li>
          ))}
        </ul>
      )}
    </main>
  );
}
