// The load test: the production images on loopback, virtual users from locust (PyPI) signing
// in, listing, creating, completing and chatting against the deterministic fake model, bounded
// in time and in requests. Not part of CI; its figures go in docs/benchmarks.md.
//
//   node tests/e2e/load/run.mjs [--users 20] [--spawn-rate 5] [--run-time 60s] [--max-requests 6000]
//                         [--frontend-env NAME=VALUE ...]
//
// Images: E2E_FRONTEND_IMAGE, E2E_BACKEND_IMAGE (default todo-*:latest) and E2E_DATABASE_IMAGE
// (default: the newest local todo-base/postgres image), as for the end-to-end test, whose stack
// (../run.mjs) this reuses. Locust is installed into target/load/venv on first use. Results:
// target/load/ (locust's CSV files, statuses.json, result.json) and a Markdown table on stdout,
// with both containers' memory before the load, at its end and 15 s later. Exit 1 on any 5xx.

import { execFile as execFileCallback } from "node:child_process";
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs, promisify } from "node:util";

import { docker, images, Stack } from "../run.mjs";

const execFile = promisify(execFileCallback);
const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, "..", "..", "..");
const OUT = join(ROOT, "target", "load");
const VENV = join(OUT, "venv");
// Pinned so that figures from two runs come from the same tool.
const LOCUST = "locust==2.47.0";
const QUIET_MS = 15_000;

const { values: opts } = parseArgs({
  options: {
    users: { type: "string", default: "20" },
    "spawn-rate": { type: "string", default: "5" },
    "run-time": { type: "string", default: "60s" },
    "max-requests": { type: "string", default: "6000" },
    // NAME=VALUE settings for the frontend's container, repeatable (e.g. NODE_OPTIONS=...).
    "frontend-env": { type: "string", multiple: true, default: [] },
  },
});

function run(command, args, env = {}) {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(command, args, { stdio: "inherit", env: { ...process.env, ...env } });
    child.on("error", reject);
    child.on("exit", (code) => (code === 0 ? resolvePromise() : reject(new Error(`${command} exited with ${code}`))));
  });
}

async function ensureLocust() {
  const locust = join(VENV, "bin", "locust");
  if (existsSync(locust)) return locust;
  console.log(`load: installing ${LOCUST} into ${VENV}`);
  await run("python3", ["-m", "venv", VENV]);
  await run(join(VENV, "bin", "pip"), ["install", "--quiet", LOCUST]);
  return locust;
}

async function databaseImage() {
  if (process.env.E2E_DATABASE_IMAGE) return process.env.E2E_DATABASE_IMAGE;
  const found = (await docker("images", "--format", "{{.Repository}}:{{.Tag}}", "todo-base/postgres")).split("\n")[0];
  if (!found) throw new Error("no PostgreSQL image: set E2E_DATABASE_IMAGE, or build the bases with `cargo xtask build`");
  return found;
}

// Memory of a container now, in MB (docker stats' usage, which excludes the page cache).
async function memoryMb(id) {
  const { stdout } = await execFile("docker", ["stats", "--no-stream", "--format", "{{json .}}", id]);
  const usage = JSON.parse(stdout).MemUsage.split("/")[0].trim();
  const [, number, unit] = usage.match(/^([\d.]+)\s*([KMG]i?B)$/) ?? [];
  const factor = { KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3, KB: 1e3, MB: 1e6, GB: 1e9 }[unit];
  return (Number(number) * factor) / 1e6;
}

async function memoryOf(stack) {
  return { backend: await memoryMb(stack.backend), frontend: await memoryMb(stack.frontend) };
}

function parseCsv(text) {
  const [header, ...rows] = text.trim().split("\n").map((line) => line.match(/("[^"]*"|[^,]*)(,|$)/g).map((c) => c.replace(/,$/, "").replace(/^"|"$/g, "")));
  return rows.map((row) => Object.fromEntries(header.map((h, i) => [h, row[i]])));
}

async function main() {
  images.database = await databaseImage();
  const locust = await ensureLocust();
  mkdirSync(OUT, { recursive: true });
  const stack = new Stack({
    // The users come through the network's gateway (the published port's proxy): trust it, so
    // that each user's X-Forwarded-For names the client, as behind a real reverse proxy.
    extraEnv: async (s) => {
      const gateway = await docker("network", "inspect", "--format", "{{(index .IPAM.Config 0).Gateway}}", s.network);
      const settings = Object.fromEntries(opts["frontend-env"].map((pair) => pair.split(/=(.*)/s).slice(0, 2)));
      return { frontend: { ...settings, TRUSTED_PROXIES: gateway } };
    },
  });
  const stop = () => stack.remove().finally(() => process.exit(130));
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
  try {
    console.log(`load: starting ${images.frontend}, ${images.backend}, ${images.database}`);
    await stack.start();
    // Memory at rest before the load, at its end, and after a quiet while (what the allocator
    // gave back).
    const memory = { before: await memoryOf(stack) };
    const prefix = join(OUT, "locust");
    const statusFile = join(OUT, "statuses.json");
    const started = Date.now();
    await run(
      locust,
      ["-f", join(HERE, "locustfile.py"), "--headless", "--only-summary", "--host", stack.baseUrl,
        "-u", opts.users, "-r", opts["spawn-rate"], "-t", opts["run-time"], "--csv", prefix, "--exit-code-on-error", "0"],
      { LOAD_MAX_REQUESTS: opts["max-requests"], LOAD_STATUS_FILE: statusFile },
    );
    const seconds = (Date.now() - started) / 1000;
    memory.end = await memoryOf(stack);
    await new Promise((r) => setTimeout(r, QUIET_MS));
    memory.after_quiet = await memoryOf(stack);
    const stats = parseCsv(readFileSync(`${prefix}_stats.csv`, "utf8"));
    const statuses = JSON.parse(readFileSync(statusFile, "utf8"));
    const result = { options: opts, seconds, memory_mb: memory, statuses, routes: stats };
    writeFileSync(join(OUT, "result.json"), JSON.stringify(result, null, 1));

    const ms = (v) => (v === "N/A" || v === undefined ? "n/a" : `${Number(v).toFixed(0)}`);
    console.log(`\n| route | requests | failures | rps | p50 ms | p95 ms | p99 ms |\n|---|---|---|---|---|---|---|`);
    for (const row of stats) {
      const name = row.Name === "Aggregated" ? "**all**" : `\`${row.Name}\``;
      console.log(`| ${name} | ${row["Request Count"]} | ${row["Failure Count"]} | ${Number(row["Requests/s"]).toFixed(1)} | ${ms(row["50%"])} | ${ms(row["95%"])} | ${ms(row["99%"])} |`);
    }
    console.log(`\nstatuses: ${JSON.stringify(statuses)}`);
    for (const [when, m] of Object.entries(memory)) {
      console.log(`memory ${when}: backend ${m.backend.toFixed(0)} MB, frontend ${m.frontend.toFixed(0)} MB`);
    }
    const fives = Object.entries(statuses).filter(([k]) => k === "5xx" || k === "no answer").reduce((n, [, v]) => n + v, 0);
    if (fives > 0) {
      console.error(`load: ${fives} answers were 5xx or none at all`);
      await stack.dumpLogs();
      process.exitCode = 1;
    }
  } finally {
    await stack.remove();
  }
}

main().catch((error) => {
  console.error(`load: ${error.message}`);
  process.exit(1);
});
