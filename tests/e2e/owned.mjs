// The labels of a browser-test run, exactly as xtask/src/owned.rs writes them for its own runs
// (`Run::labels`) and as its reaper reads them: the run id is `<start in seconds, hex>-<pid>`, and
// a kept run is never reaped unasked. No dependency, so that a test can import it alone.
//
// This process removes what it made on every exit path it sees (run.mjs); a run killed outright
// cannot, and its things are reaped by the Rust side (`cargo xtask test` before and after the
// browser test, `cargo xtask down --leftovers`), one reaper for every kind of run.
export function runLabels({ keep = false } = {}) {
  const started = Math.floor(Date.now() / 1000);
  const run = `${started.toString(16)}-${process.pid}`;
  const labels = {
    "todo-chatbot.owner": "e2e",
    "todo-chatbot.run": run,
    "todo-chatbot.pid": String(process.pid),
    "todo-chatbot.started": String(started),
    "todo-chatbot.keep": keep ? "1" : "0",
  };
  return { run, args: Object.entries(labels).flatMap(([k, v]) => ["--label", `${k}=${v}`]) };
}
