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
    console.error("usage: node e2e/scenario.mjs http://127.0.0.1:3000 [SCREENSHOT_DIR]");
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
