// What a user does, in headless Chromium: sign up, manage todos, ask the chat to add one.
//
// Driven by playwright-core (the library without its bundled browsers) against Debian's
// /usr/bin/chromium. Every step waits for what the user would see, with generous timeouts;
// a failure says which step and what the page showed instead.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { chromium } from "playwright-core";

export const CHROMIUM = "/usr/bin/chromium";

// The flags the project runs Chromium with: headless, no sandbox (it runs as root in CI), and
// nothing that reaches out to Google's services, so the test sends no traffic off the machine.
const FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

const STEP_TIMEOUT_MS = 30_000;
// Better Auth's session cookie (the name under https starts with __Secure-).
const SESSION_COOKIE = /(^|\.)better-auth\.session_token$/;
// The headers every frontend response carries (frontend/next.config.ts, frontend/proxy.ts).
const SECURITY_HEADERS = {
  "x-content-type-options": "nosniff",
  "x-frame-options": "DENY",
  "referrer-policy": "strict-origin-when-cross-origin",
};

class StepError extends Error {}

async function step(name, work) {
  const started = Date.now();
  try {
    await work();
  } catch (error) {
    throw new StepError(`step "${name}" failed: ${error.message}`);
  }
  console.log(`e2e: ok  ${name} (${Date.now() - started} ms)`);
}

// Waits until `locator` shows `text` (a substring), or fails with what it shows instead.
async function waitForText(locator, text, timeout = STEP_TIMEOUT_MS) {
  const deadline = Date.now() + timeout;
  let seen = "";
  while (Date.now() < deadline) {
    seen = (await locator.allInnerTexts().catch(() => [])).join(" | ");
    if (seen.includes(text)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`expected "${text}", the page shows: ${JSON.stringify(seen.slice(0, 500))}`);
}

async function waitForNoText(locator, text, timeout = STEP_TIMEOUT_MS) {
  const deadline = Date.now() + timeout;
  let seen = "";
  while (Date.now() < deadline) {
    seen = (await locator.allInnerTexts().catch(() => [])).join(" | ");
    if (!seen.includes(text)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`expected "${text}" to be gone, the page shows: ${JSON.stringify(seen.slice(0, 500))}`);
}

async function signUp(page, baseUrl, name, email) {
  await page.goto(`${baseUrl}/sign-up`);
  await page.getByLabel("Name").fill(name);
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill("correct horse battery staple");
  await page.getByRole("button", { name: "Sign up" }).click();
  await page.waitForURL(`${baseUrl}/todos`, { timeout: STEP_TIMEOUT_MS });
}

// The forms the session token takes: the cookie's value as sent (URL-encoded), decoded (the
// signed token), and the bare token before its signature.
async function sessionTokenForms(context, baseUrl) {
  const cookie = (await context.cookies(baseUrl)).find((c) => SESSION_COOKIE.test(c.name));
  if (!cookie) throw new Error("no Better Auth session cookie after signing in");
  if (!cookie.httpOnly) throw new Error(`the session cookie ${cookie.name} is not HttpOnly`);
  const signed = decodeURIComponent(cookie.value);
  const bare = signed.slice(0, signed.lastIndexOf("."));
  if (bare.length < 16) throw new Error("the session cookie does not hold a signed token");
  return [cookie.value, signed, bare];
}

// Everything a script on the page can read: the HTML as served and as it is now, document.cookie,
// both storages, Next's flight data, and every global whose value can be written as JSON.
async function scriptVisible(page) {
  return page.evaluate(() => {
    const seen = [document.documentElement.outerHTML, document.cookie];
    for (const storage of [localStorage, sessionStorage]) {
      for (let i = 0; i < storage.length; i++) seen.push(storage.key(i), storage.getItem(storage.key(i)));
    }
    for (const name of Object.getOwnPropertyNames(window)) {
      try {
        const text = JSON.stringify(window[name]);
        if (typeof text === "string") seen.push(text);
      } catch {
        // Circular or host objects: not plain data.
      }
    }
    return seen.join("\n");
  });
}

function assertNoToken(where, text, forms) {
  const found = forms.find((form) => text.includes(form));
  if (found) throw new Error(`the session token is in ${where}`);
}

function assertSecurityHeaders(what, headers) {
  for (const [name, value] of Object.entries(SECURITY_HEADERS)) {
    if (headers[name] !== value) throw new Error(`${what}: header ${name} is ${JSON.stringify(headers[name])}, expected ${value}`);
  }
  if (!/frame-ancestors 'none'/.test(headers["content-security-policy"] ?? "")) {
    throw new Error(`${what}: no Content-Security-Policy with frame-ancestors 'none' (${headers["content-security-policy"]})`);
  }
}

// fetch, tried once more when the connection was lost: a server that refuses a body before reading
// it closes the connection, which a pooled keep-alive socket may only notice on its next request.
async function post(url, init) {
  try {
    return await fetch(url, init);
  } catch (error) {
    if (init.body instanceof ReadableStream) throw error;
    return fetch(url, init);
  }
}

/**
 * Runs the whole scenario against the frontend at `baseUrl`; saves `todos.png` and `chat.png`
 * in `screenshots` when given. Throws on the first step that fails.
 */
export async function scenario({ baseUrl, screenshots }) {
  const userDataDir = mkdtempSync(join(tmpdir(), "todo-e2e-chromium-"));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: FLAGS,
    viewport: { width: 1000, height: 760 },
    timeout: 60_000,
  });
  context.setDefaultTimeout(STEP_TIMEOUT_MS);
  const problems = [];
  const origin = new URL(baseUrl).hostname;
  try {
    const page = context.pages()[0] ?? (await context.newPage());
    page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
    // The pages must run under their Content Security Policy: any violation is a failure.
    page.on("console", (message) => {
      if (/Content Security Policy|Refused to (execute|load|apply|connect|frame)/i.test(message.text())) {
        problems.push(`CSP violation: ${message.text()}`);
      }
    });
    // Every answer the pages get from this origin, to search for the session token afterwards.
    const answers = [];
    page.on("response", (response) => {
      if (response.url().startsWith(baseUrl) && response.request().resourceType() !== "image") {
        answers.push(response.text().then((text) => [response.url(), text], () => [response.url(), ""]));
      }
    });
    // The app must not fetch anything from the internet (fonts, CDNs): only the local stack.
    page.on("request", (request) => {
      const host = new URL(request.url()).hostname;
      if (!["127.0.0.1", "localhost", origin].includes(host) && !request.url().startsWith("data:")) {
        problems.push(`request off the machine: ${request.url()}`);
      }
    });
    const list = page.getByRole("list", { name: "Todos" });
    const email = `e2e-${Date.now()}@example.test`;

    await step("an anonymous visitor is sent to sign in", async () => {
      await page.goto(`${baseUrl}/todos`);
      await page.waitForURL(`${baseUrl}/sign-in`);
    });

    await step("sign up with email and password", async () => {
      await signUp(page, baseUrl, "E2E User", email);
      await waitForText(page.locator("main"), "Nothing to do yet");
    });

    await step("add a todo", async () => {
      for (const title of ["write the report", "call the plumber"]) {
        await page.getByLabel("New todo").fill(title);
        await page.getByRole("button", { name: "Add" }).click();
        await waitForText(list, title);
      }
    });

    await step("complete a todo and filter by status", async () => {
      // A click, not check(): the box turns checked once the backend has answered.
      await page.getByLabel("Completed: write the report").click();
      await page.locator("li.done", { hasText: "write the report" }).waitFor();
      await page.getByRole("button", { name: "Pending" }).click();
      await waitForNoText(list, "write the report");
      await waitForText(list, "call the plumber");
      await page.getByRole("button", { name: "Completed" }).click();
      await waitForText(list, "write the report");
      await waitForNoText(list, "call the plumber");
      await page.getByRole("button", { name: "All" }).click();
      await waitForText(list, "call the plumber");
    });

    await step("delete a todo", async () => {
      await page.getByRole("button", { name: "Delete call the plumber" }).click();
      await waitForNoText(list, "call the plumber");
      await waitForText(list, "write the report");
    });

    await step('ask the chat to "add buy milk"', async () => {
      await page.getByRole("link", { name: "Chat" }).click();
      await page.waitForURL(`${baseUrl}/chat`);
      await page.getByLabel("Message").fill("add buy milk");
      await page.getByRole("button", { name: "Send" }).click();
      await waitForText(page.locator(".bubble.assistant"), 'Added "buy milk" to your list.');
      await waitForText(page.locator(".bubble.assistant .actions"), "add task: buy milk");
      if (screenshots) await page.screenshot({ path: join(screenshots, "chat.png"), fullPage: true });
    });

    await step("the chat's todo appears on the todo page", async () => {
      await page.getByRole("link", { name: "Todos" }).click();
      await page.waitForURL(`${baseUrl}/todos`);
      await waitForText(list, "buy milk");
      await waitForText(list, "write the report");
      if (screenshots) await page.screenshot({ path: join(screenshots, "todos.png"), fullPage: true });
    });

    await step("the conversation is kept after a reload", async () => {
      await page.goto(`${baseUrl}/chat`);
      await waitForText(page.locator(".bubble.user"), "add buy milk");
      await waitForText(page.locator(".bubble.assistant"), 'Added "buy milk"');
    });

    await step("the session token is in no page, script-visible value or response body", async () => {
      const forms = await sessionTokenForms(context, baseUrl);
      for (const path of ["/todos", "/chat"]) {
        const served = await page.request.get(`${baseUrl}${path}`);
        if (served.status() !== 200) throw new Error(`GET ${path} answered ${served.status()}`);
        assertNoToken(`the HTML of ${path}`, await served.text(), forms);
        await page.goto(`${baseUrl}${path}`);
        await page.getByLabel(path === "/todos" ? "New todo" : "Message").waitFor();
        assertNoToken(`what a script on ${path} can read`, await scriptVisible(page), forms);
      }
      const cookies = await page.evaluate(() => document.cookie);
      assertNoToken("document.cookie", cookies, forms);
      for (const [url, text] of await Promise.all(answers)) {
        assertNoToken(`the body of ${url}`, text, forms);
      }
    });

    await step("every response carries the security headers", async () => {
      const html = await page.request.get(`${baseUrl}/todos`);
      assertSecurityHeaders("the todo page", html.headers());
      const csp = html.headers()["content-security-policy"];
      if (!/script-src[^;]*'nonce-/.test(csp) || /script-src[^;]*'unsafe-inline'/.test(csp)) {
        throw new Error(`the page's CSP does not restrict scripts to its nonce: ${csp}`);
      }
      const script = (await page.locator("script[src]").first().getAttribute("src")) ?? "";
      const responses = [
        ["/api/health", await page.request.get(`${baseUrl}/api/health`)],
        ["/sign-in", await page.request.get(`${baseUrl}/sign-in`)],
        [script, await page.request.get(new URL(script, baseUrl).href)],
      ];
      for (const [what, response] of responses) assertSecurityHeaders(what, response.headers());
    });

    await step("sign out, then a second user sees none of the first user's todos", async () => {
      await page.getByRole("button", { name: "Sign out" }).click();
      await page.waitForURL(`${baseUrl}/sign-in`);
      await page.goto(`${baseUrl}/todos`);
      await page.waitForURL(`${baseUrl}/sign-in`);
      await signUp(page, baseUrl, "Second User", `second-${email}`);
      await waitForText(page.locator("main"), "Nothing to do yet");
      await page.goto(`${baseUrl}/chat`);
      await page.getByLabel("Message").waitFor();
      await waitForNoText(page.locator(".chat"), "buy milk", 2_000);
    });

    await step("sign in again as the first user", async () => {
      await page.getByRole("button", { name: "Sign out" }).click();
      await page.waitForURL(`${baseUrl}/sign-in`);
      await page.getByLabel("Email").fill(email);
      await page.getByLabel("Password").fill("correct horse battery staple");
      await page.getByRole("button", { name: "Sign in" }).click();
      await page.waitForURL(`${baseUrl}/todos`);
      await waitForText(list, "buy milk");
    });

    await step("sign-in tries are limited per client, whatever X-Forwarded-For says", async () => {
      const statuses = [];
      for (let i = 1; i <= 6; i++) {
        const response = await post(`${baseUrl}/api/auth/sign-in/email`, {
          method: "POST",
          headers: { "content-type": "application/json", origin: baseUrl, "x-forwarded-for": `203.0.113.${i}` },
          body: JSON.stringify({ email, password: `wrong password ${i}` }),
        });
        statuses.push(response.status);
      }
      if (!statuses.includes(429)) {
        throw new Error(`6 wrong passwords, each from a new X-Forwarded-For, answered ${statuses.join(", ")}: no 429`);
      }
    });

    await step("request bodies over 64 KiB are refused with a 413 before they are read", async () => {
      const big = JSON.stringify({ message: "x".repeat(100 * 1024) });
      for (const path of ["/api/backend/chat", "/api/auth/sign-in/email"]) {
        const response = await post(`${baseUrl}${path}`, {
          method: "POST",
          headers: { "content-type": "application/json", origin: baseUrl },
          body: big,
        });
        const detail = (await response.json().catch(() => ({}))).detail ?? "";
        if (response.status !== 413 || !detail.includes("MAX_REQUEST_BYTES")) {
          throw new Error(`POST ${path} with 100 KiB answered ${response.status}: ${detail}`);
        }
      }
      // Chunked, with no Content-Length: refused as the bytes pass the limit.
      const chunks = new ReadableStream({
        pull(controller) {
          controller.enqueue(new TextEncoder().encode("x".repeat(16 * 1024)));
          if ((this.sent = (this.sent ?? 0) + 1) >= 8) controller.close();
        },
      });
      const chunked = await post(`${baseUrl}/api/auth/sign-in/email`, {
        method: "POST",
        headers: { "content-type": "application/json", origin: baseUrl },
        body: chunks,
        duplex: "half",
      });
      if (chunked.status !== 413) throw new Error(`a chunked 128 KiB body answered ${chunked.status}`);
    });

    if (problems.length > 0) {
      throw new StepError(`the pages misbehaved:\n  ${problems.join("\n  ")}`);
    }
  } finally {
    await context.close().catch(() => {});
    rmSync(userDataDir, { recursive: true, force: true });
  }
}

// `node scenario.mjs URL [SCREENSHOT_DIR]`: the scenario alone, against a stack already running.
if (import.meta.url === `file://${process.argv[1]}`) {
  const [baseUrl, screenshots] = process.argv.slice(2);
  if (!baseUrl) {
    console.error("usage: node tests/e2e/scenario.mjs http://127.0.0.1:3000 [SCREENSHOT_DIR]");
    process.exit(2);
  }
  scenario({ baseUrl: baseUrl.replace(/\/+$/, ""), screenshots }).then(
    () => console.log("e2e: passed"),
    (error) => {
      console.error(`e2e: FAILED: ${error.message}`);
      process.exit(1);
    },
  );
}
