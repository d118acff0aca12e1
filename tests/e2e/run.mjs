// The end-to-end test: the real images on a Docker network of their own, a real PostgreSQL,
// a fake OpenAI-compatible model, and a user in headless Chromium (scenario.mjs).
//
//   E2E_DATABASE_IMAGE=todo-base/postgres:<hash> node tests/e2e/run.mjs
//
// `cargo xtask test` runs it after building the images, with every variable set:
//   E2E_FRONTEND_IMAGE, E2E_BACKEND_IMAGE  the images under test (default todo-*:latest)
//   E2E_DATABASE_IMAGE                     a PostgreSQL image honouring POSTGRES_USER/_PASSWORD/_DB
//   E2E_SCREENSHOTS                        a folder for todos.png and chat.png (optional)
//   E2E_KEEP=1                             leave the stack running for a look (prints the URL)
//
// The model is tests/e2e/fake_model.py, run by the backend image's own Python: it answers with
// deterministic tool calls, so nothing here needs the internet. Every container and the network
// carry the labels of a run in xtask/src/owned.rs (owner e2e, run id, pid, start, keep; see
// owned.mjs). This process removes them on every exit path it sees (success, failure, Ctrl-C);
// what a killed run left is reaped by `cargo xtask test`, before and after it runs this file,
// with the same reaper as smoke's leftovers, which the labels are written for.

import { execFile as execFileCallback, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { createServer } from "node:net";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

import { runLabels } from "./owned.mjs";
import { CHROMIUM, scenario } from "./scenario.mjs";

const execFile = promisify(execFileCallback);
const HERE = dirname(fileURLToPath(import.meta.url));
const HEALTHY_TIMEOUT_MS = 120_000;

export const images = {
  frontend: process.env.E2E_FRONTEND_IMAGE || "todo-frontend:latest",
  backend: process.env.E2E_BACKEND_IMAGE || "todo-backend:latest",
  database: process.env.E2E_DATABASE_IMAGE,
};

// Every docker call runs in a process group of its own (`detached`), so that a terminal's
// Ctrl-C, which reaches this run's whole group, never cuts one off in the middle of a request:
// a `docker run` or `network create` killed there may still have made its container or network
// in the engine, unseen by the run that then removes its stack. The calls are short; the run
// itself decides what happens on Ctrl-C, and waits for them.
const OWN_GROUP = { detached: true };

export async function docker(...args) {
  try {
    const { stdout } = await execFile("docker", args, { maxBuffer: 16 << 20, ...OWN_GROUP });
    return stdout.trim();
  } catch (error) {
    throw new Error(`docker ${args.slice(0, 3).join(" ")} … failed: ${(error.stderr || error.message).trim()}`);
  }
}

// Secrets reach the containers through the docker CLI's environment (`-e NAME`), never its
// arguments, so they show in no process list.
function dockerRunWith(env, ...args) {
  const names = Object.keys(env).flatMap((name) => ["-e", name]);
  return execFile("docker", ["run", "-d", ...names, ...args], { env: { ...process.env, ...env }, ...OWN_GROUP }).then(
    ({ stdout }) => stdout.trim(),
    (error) => {
      throw new Error(`docker run ${args.at(-1)} failed: ${(error.stderr || error.message).trim()}`);
    },
  );
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

// The stack: PostgreSQL, the fake model, the backend and the frontend on a network of their own.
// `extraEnv(stack)` may add settings to the backend's and frontend's environments
// ({backend: {...}, frontend: {...}}); it runs once the network exists (the load test trusts
// its gateway as a proxy).
export class Stack {
  constructor({ extraEnv } = {}) {
    this.extraEnv = extraEnv ?? (() => ({}));
    const { run, args } = runLabels({ keep: process.env.E2E_KEEP === "1" });
    this.run = run;
    this.network = `todo-e2e-${this.run}`;
    this.containers = [];
    this.inflight = new Set();
    this.stopped = false;
    this.labels = args;
  }

  async start() {
    if (this.stopped) throw new Error("stopped");
    const created = docker("network", "create", ...this.labels, this.network);
    this.inflight.add(created);
    try {
      await created;
      this.networkCreated = true;
    } finally {
      this.inflight.delete(created);
    }
    const password = randomBytes(12).toString("hex");
    const secret = randomBytes(24).toString("hex");
    const databaseUrl = `postgresql://todo:${password}@db:5432/todo`;
    const [frontendPort, backendPort] = [await freePort(), await freePort()];
    this.baseUrl = `http://127.0.0.1:${frontendPort}`;
    this.apiUrl = `http://127.0.0.1:${backendPort}`;

    const common = [...this.labels, "--network", this.network];
    const extra = await this.extraEnv(this);
    this.db = await this.add(() =>
      dockerRunWith({ POSTGRES_USER: "todo", POSTGRES_PASSWORD: password, POSTGRES_DB: "todo" },
        ...common, "--name", `${this.network}-db`, "--network-alias", "db", images.database),
    );
    // The backend image runs the fake model: it has Python and nothing else is needed.
    this.model = await this.add(() =>
      docker("run", "-d", ...common, "--name", `${this.network}-model`, "--network-alias", "model",
        "--no-healthcheck", "-v", `${join(HERE, "fake_model.py")}:/srv/fake_model.py:ro`,
        images.backend, "python", "/srv/fake_model.py", "8080"),
    );
    await this.waitHealthy(this.db, "database");
    this.backend = await this.add(() =>
      dockerRunWith(
        {
          DATABASE_URL: databaseUrl,
          BETTER_AUTH_SECRET: secret,
          OPENAI_API_KEY: `sk-e2e-${randomBytes(8).toString("hex")}`,
          AGENT_MODEL: "fake-model",
          OPENAI_BASE_URL: "http://model:8080/v1",
          FRONTEND_URL: this.baseUrl,
          ...extra.backend,
        },
        ...common, "--name", `${this.network}-backend`, "--network-alias", "backend",
        "-p", `127.0.0.1:${backendPort}:8000`, images.backend,
      ),
    );
    this.frontend = await this.add(() =>
      dockerRunWith(
        {
          DATABASE_URL: databaseUrl,
          BETTER_AUTH_SECRET: secret,
          BETTER_AUTH_URL: this.baseUrl,
          NEXT_PUBLIC_API_URL: this.apiUrl,
          BACKEND_URL: "http://backend:8000",
          ...extra.frontend,
        },
        ...common, "--name", `${this.network}-frontend`, "--network-alias", "frontend",
        "-p", `127.0.0.1:${frontendPort}:3000`, images.frontend,
      ),
    );
    await Promise.all([this.waitHealthy(this.backend, "backend"), this.waitHealthy(this.frontend, "frontend")]);
  }

  // Starts one container; refuses once the stack is being removed, and lets remove() wait for a
  // start in flight, so that no container appears after the removal.
  async add(start) {
    if (this.stopped) throw new Error("stopped");
    const started = start();
    this.inflight.add(started);
    try {
      const id = await started;
      this.containers.push(id);
      return id;
    } finally {
      this.inflight.delete(started);
    }
  }

  async waitHealthy(id, name) {
    const deadline = Date.now() + HEALTHY_TIMEOUT_MS;
    let state = "";
    while (Date.now() < deadline) {
      state = await docker("inspect", "--format", "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}", id);
      if (state === "running healthy") return;
      if (!state.startsWith("running")) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    throw new Error(`the ${name} container is not healthy (${state}):\n${await this.logs(id)}`);
  }

  async logs(id) {
    const { stdout, stderr } = await execFile("docker", ["logs", "--tail", "60", id]).catch((e) => e);
    return `${stdout ?? ""}${stderr ?? ""}`.trim();
  }

  async dumpLogs() {
    for (const [name, id] of [["backend", this.backend], ["frontend", this.frontend], ["model", this.model], ["database", this.db]]) {
      if (id) console.error(`---- ${name} logs ----\n${await this.logs(id)}`);
    }
  }

  // Removes the stack: everything that carries this run's label, found by the label rather than
  // only from the ids the run kept, so that a call cut off before it answered leaves nothing.
  async remove() {
    this.stopped = true;
    await Promise.allSettled([...this.inflight]);
    const label = `label=todo-chatbot.run=${this.run}`;
    const report = (e) => console.error(`e2e: ${e.message}`);
    const containers = await docker("ps", "-aq", "--no-trunc", "--filter", label).catch((e) => (report(e), ""));
    const ids = [...new Set([...this.containers, ...containers.split("\n").filter(Boolean)])];
    if (ids.length > 0) {
      await docker("rm", "-f", "-v", ...ids).catch(report);
      this.containers = [];
    }
    const networks = await docker("network", "ls", "-q", "--filter", label).catch((e) => (report(e), ""));
    for (const id of networks.split("\n").filter(Boolean)) {
      await docker("network", "rm", id).catch(report);
    }
    this.networkCreated = false;
  }
}

async function main() {
  if (!images.database) {
    throw new Error("E2E_DATABASE_IMAGE is not set: name a PostgreSQL image (`cargo xtask test` sets it)");
  }
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: install Debian's browser with \`apt-get install -y chromium\``);
  }
  for (const image of Object.values(images)) {
    if (spawnSync("docker", ["image", "inspect", image], { stdio: "ignore" }).status !== 0) {
      throw new Error(`image ${image} is missing: build it first (\`cargo xtask build\`)`);
    }
  }
  const stack = new Stack();
  // On Ctrl-C the stack goes and the run ends with 130; a second Ctrl-C exits at once. The main
  // flow, whose docker calls now fail, waits for that instead of reporting a failure.
  let stopping = null;
  const stop = (signal) => {
    if (stopping) process.exit(130);
    console.error(`e2e: ${signal}: removing the stack`);
    stopping = stack.remove().finally(() => process.exit(130));
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);

  let failed = false;
  try {
    // On stderr, like `smoke run <id>`: what a caller looks for by the run's label afterwards.
    console.error(`e2e run ${stack.run}`);
    console.log(`e2e: starting ${images.frontend}, ${images.backend}, ${images.database} on network ${stack.network}`);
    const started = Date.now();
    await stack.start();
    console.log(`e2e: stack healthy in ${Date.now() - started} ms; frontend at ${stack.baseUrl}`);
    const health = await (await fetch(`${stack.baseUrl}/api/health`)).json();
    if (health.backend !== "ok") {
      throw new Error(`the frontend's /api/health does not reach the backend: ${JSON.stringify(health)}`);
    }
    await scenario({ baseUrl: stack.baseUrl, screenshots: process.env.E2E_SCREENSHOTS || undefined });
    console.log("e2e: passed");
  } catch (error) {
    if (stopping) await stopping;
    failed = true;
    console.error(`e2e: FAILED: ${error.message}`);
    await stack.dumpLogs();
  } finally {
    if (stopping) await stopping;
    if (process.env.E2E_KEEP === "1" && !failed) {
      console.log(`e2e: the stack stays up at ${stack.baseUrl}; remove it with: docker rm -f $(docker ps -aq --filter label=todo-chatbot.run=${stack.run}) && docker network rm ${stack.network}`);
    } else {
      await stack.remove();
    }
  }
  process.exit(failed ? 1 : 0);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((error) => {
    console.error(`e2e: ${error.message}`);
    process.exit(1);
  });
}
