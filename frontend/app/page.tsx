export default function Home() {
  return (
    <main className="container">
      <h1>Todo Chatbot</h1>
      <p>
        Manage your todo list in plain language: ask the assistant to add, list, complete or
        delete tasks, and it keeps your list up to date.
      </p>
      <p className="muted">
        Service status: <a href="/api/health">/api/health</a>
      </p>
    </main>
  );
}
