"use client";

// Shown when a page cannot be rendered, typically because the database is not reachable.
export default function ErrorPage({ reset }: { error: Error; reset: () => void }) {
  return (
    <main className="container">
      <h1>Something went wrong</h1>
      <p>The service could not load this page. It may still be starting; try again in a moment.</p>
      <button type="button" onClick={reset}>
        Try again
      </button>
    </main>
  );
}
