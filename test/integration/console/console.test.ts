/**
 * The operator console in a real browser (Debian's chromium driven by playwright-core) against a
 * real node: `doppel start --demo` with API keys and the HTTP listener on loopback, the compiled
 * package (dist/, console included). Signs in, finds a twin by filter, sees a report arrive live
 * over the WebSocket watch, changes desired (and meets a version conflict), invokes a command,
 * reads the history and a telemetry chart. Every view passes axe-core with no serious or critical
 * violation; screenshots are kept in test-results/console/.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { type Browser, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DoppelClient } from "../../../runtime/client.ts";
import { freePort } from "../../../runtime/testing/free-port.ts";

const ROOT = fileURLToPath(new URL("../../..", import.meta.url));
const BIN = join(ROOT, "bin", "doppel.js");
const SHOTS = join(ROOT, "test-results", "console");
const AXE = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");
/** The twin the test drives: no simulated device touches it, so its versions move only when the test acts. */
const PROBE = { type: "thermostat", id: "console-probe" };
/** This process's environment without DOPPEL_* (the test's servers are not the node's: it runs alone). */
const ENV = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith("DOPPEL_")));

let dir: string;
let node: ChildProcess;
let nodeOutput = "";
let consoleUrl: string;
let key: string;
let client: DoppelClient;
let browser: Browser;
let page: Page;

/** Runs `doppel ...` (the compiled CLI) and returns its stdout. */
function doppel(...args: string[]): string {
  return execFileSync(process.execPath, [BIN, ...args], { cwd: dir, env: ENV, encoding: "utf8" });
}

/** Resolves with the first match of `pattern` in the node's output (it prints its addresses once ready). */
function waitForOutput(pattern: RegExp): Promise<RegExpMatchArray> {
  return new Promise((resolve, reject) => {
    const check = () => {
      const match = nodeOutput.match(pattern);
      if (match) {
        node.stdout?.off("data", check);
        resolve(match);
      }
    };
    node.stdout?.on("data", check);
    node.once("exit", (code) =>
      reject(new Error(`node exited (${code}) before printing ${pattern}:\n${nodeOutput}`)),
    );
    check();
  });
}

/** axe-core on the page as it is: no serious or critical violation (each named with its nodes). */
async function expectAccessible(view: string): Promise<void> {
  await page.addScriptTag({ content: AXE });
  // Runs in the browser; the test's TypeScript knows no DOM, hence the casts.
  const violations = await page.evaluate(async () => {
    const browser = globalThis as unknown as {
      axe: { run: (context: unknown) => Promise<AxeResults> };
      document: unknown;
    };
    const results = await browser.axe.run(browser.document);
    return results.violations
      .filter((v) => v.impact === "serious" || v.impact === "critical")
      .map((v) => `${v.id} (${v.impact}): ${v.help} at ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`);
  });
  expect(violations, `axe on the ${view} view`).toEqual([]);
}
interface AxeResults {
  violations: { id: string; impact: string; help: string; nodes: { target: string[] }[] }[];
}

async function screenshot(name: string): Promise<void> {
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}

beforeAll(async () => {
  const executablePath = execFileSync("bash", [join(ROOT, "scripts/infra/chromium.sh")], {
    encoding: "utf8",
  }).trim();
  mkdirSync(SHOTS, { recursive: true });
  dir = mkdtempSync(join(tmpdir(), "doppel-console-"));
  const keys = join(dir, "api-keys.json");
  key = doppel("keys", "create", "--file", keys, "--scopes", "read,write,command,admin").trim();
  const [grpcPort, httpPort] = [await freePort(), await freePort()];
  node = spawn(
    process.execPath,
    [
      BIN,
      "start",
      "--demo",
      "--api-keys",
      keys,
      "--listen",
      `127.0.0.1:${grpcPort}`,
      "--http",
      `127.0.0.1:${httpPort}`,
      "--data",
      join(dir, "data"),
      "--metrics",
      "off",
      "--log-level",
      "warn",
    ],
    { cwd: dir, env: ENV, stdio: ["ignore", "pipe", "pipe"] },
  );
  node.stdout?.setEncoding("utf8").on("data", (chunk: string) => (nodeOutput += chunk));
  node.stderr?.setEncoding("utf8").on("data", (chunk: string) => (nodeOutput += chunk));
  consoleUrl = (await waitForOutput(/console\s+(http:\/\/\S+)/))[1]!;
  client = new DoppelClient(`127.0.0.1:${grpcPort}`, { token: key });
  await client.reportState(PROBE, { temperature: 20, firmware: "probe-1" });
  browser = await chromium.launch({ executablePath });
  // bypassCSP: the console's policy allows no inline script, and axe-core is injected as one.
  page = await browser.newPage({ viewport: { width: 1366, height: 900 }, bypassCSP: true });
});

afterAll(async () => {
  await browser?.close();
  client?.close();
  if (node && node.exitCode === null) {
    const exited = new Promise((resolve) => node.once("exit", resolve));
    node.kill("SIGTERM");
    await exited;
  }
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("console", () => {
  it("npm start's line names the console, and signing in needs a valid key", async () => {
    expect(consoleUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
    await page.goto(consoleUrl);
    await page.getByRole("heading", { name: "Sign in" }).waitFor();
    await expectAccessible("sign-in");
    await screenshot("1-sign-in");

    await page.getByLabel("API key").fill("dpk_000000000000_not-a-key");
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("alert").filter({ hasText: "Not signed in" }).waitFor();

    await page.getByLabel("API key").fill(key);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("heading", { name: /^Cluster/ }).waitFor();
    expect(await page.evaluate("sessionStorage.getItem('doppel.apiKey')")).toBe(key);
  });

  it("the cluster view shows the node and every shard on the map", async () => {
    const cluster = await client.cluster();
    await page.getByRole("list", { name: "Shards by holder" }).waitFor();
    expect(await page.getByRole("list", { name: "Shards by holder" }).getByRole("listitem").count()).toBe(
      cluster.shardCount,
    );
    await page.getByRole("row", { name: new RegExp(`${cluster.self} \\(this node\\)`) }).waitFor();
    await expectAccessible("cluster");
    await screenshot("2-cluster");
  });

  it("the twin browser lists the demo fleet and finds a twin by filter", async () => {
    await page.getByRole("navigation", { name: "Console" }).getByRole("link", { name: "Twins" }).click();
    await page.getByLabel("Type").selectOption("thermostat");
    const results = page.getByRole("table").getByRole("row");
    // The demo's simulated thermostats appear as they first report: search again until the page
    // lists some besides the probe (header row excluded), as an operator would.
    for (let attempt = 0; attempt < 60 && (await results.count()) <= 2; attempt++) {
      await page.getByRole("button", { name: "Search" }).click();
      await page.getByRole("heading", { name: /^Page 1: \d+ twins?$/ }).waitFor();
    }
    expect(await results.count()).toBeGreaterThan(2);
    await expectAccessible("twin browser");

    await page.getByLabel("Filter").fill("reported.temperature >");
    await page.getByRole("button", { name: "Search" }).click();
    await page.getByRole("alert").filter({ hasText: "Query refused" }).waitFor();

    await page.getByLabel("Filter").fill("reported.firmware == 'probe-1'");
    await page.getByRole("button", { name: "Search" }).click();
    await page.getByRole("heading", { name: "Page 1: 1 twin" }).waitFor();
    await screenshot("3-twin-browser");
    await page.getByRole("link", { name: PROBE.id }).click();
    await page.getByRole("heading", { name: `${PROBE.type}/${PROBE.id}` }).waitFor();
  });

  it("the twin page updates live when the device reports", async () => {
    await page.getByTestId("watch-status").filter({ hasText: "Live" }).waitFor();
    await page.getByTestId("twin-reported").filter({ hasText: "probe-1" }).waitFor();
    const before = Number(await page.getByTestId("twin-version").textContent());
    const report = await client.reportState(PROBE, { firmware: "probe-2" });
    expect(report.version).toBeGreaterThan(before);
    await page.getByTestId("twin-reported").filter({ hasText: "probe-2" }).waitFor();
    await page
      .getByTestId("twin-version")
      .filter({ hasText: String(report.version) })
      .waitFor();
    await expectAccessible("twin");
    await screenshot("4-twin-live");
  });

  it("changing desired meets a version conflict when the twin moved, then succeeds on the new version", async () => {
    await page.getByRole("button", { name: "Edit desired" }).click();
    await page.getByLabel(/Merge patch for desired/).fill('{ "heating": false }');
    // The device reports while the operator edits: the edit's version is now stale.
    const moved = await client.reportState(PROBE, { firmware: "probe-3" });
    await page.getByText(`it is now at version ${moved.version}`).waitFor();
    await page.getByRole("button", { name: "Apply" }).click();
    const conflict = page.getByTestId("desired-conflict");
    await conflict.filter({ hasText: "Version conflict" }).waitFor();
    expect(await conflict.textContent()).toContain(`moved on to version ${moved.version}`);
    expect((await client.getTwin(PROBE)).version).toBe(moved.version);
    await expectAccessible("desired conflict");
    await screenshot("5-desired-conflict");

    await page.getByRole("button", { name: `Base my edit on version ${moved.version}` }).click();
    await page.getByRole("button", { name: "Apply" }).click();
    await page.getByText(`Desired updated: the twin is now at version ${moved.version + 1}`).waitFor();
    await page.getByTestId("twin-desired").filter({ hasText: '"heating": false' }).waitFor();
    expect((await client.getTwin(PROBE)).desired).toMatchObject({ heating: false });
  });

  it("a command form shows the schema's validation errors, then the command's result", async () => {
    await page.getByLabel("Command", { exact: true }).selectOption("setTarget");
    const celsius = page.getByLabel("celsius", { exact: true });
    await celsius.fill("99");
    await page.getByRole("button", { name: "Invoke setTarget" }).click();
    await page.getByText("Must be at most 35.").waitFor();
    expect(await celsius.getAttribute("aria-invalid")).toBe("true");
    await expectAccessible("command validation");
    await screenshot("6-command-invalid");

    await celsius.fill("23");
    await page.getByRole("button", { name: "Invoke setTarget" }).click();
    const result = page.getByTestId("command-result");
    await result.filter({ hasText: '"setPoint": 23' }).waitFor();
    expect((await client.getTwin(PROBE)).state).toMatchObject({ setPoint: 23 });
    await page.getByTestId("twin-state").filter({ hasText: '"setPoint": 23' }).waitFor();
    await page.getByTestId("history").getByText("setPointChanged").first().waitFor();
    await page.getByTestId("history").getByText("$desired").first().waitFor();
    await screenshot("7-command-result");
  });

  it("a simulated twin's telemetry is drawn as a chart", async () => {
    await page.goto(
      `${consoleUrl}#/twins?type=thermostat&where=${encodeURIComponent(`id != '${PROBE.id}'`)}`,
    );
    await page.getByRole("heading", { name: /^Page 1:/ }).waitFor();
    await page.getByRole("table").getByRole("row").nth(1).getByRole("link").click();
    const chart = page.getByTestId("telemetry-chart");
    await chart.locator("canvas").waitFor();
    await expect
      .poll(async () => Number(await chart.getAttribute("data-points")), { timeout: 60_000, interval: 500 })
      .toBeGreaterThan(1);
    await page.getByRole("img", { name: /^temperature: \d+ points/ }).waitFor();
    await expectAccessible("telemetry");
    await screenshot("8-telemetry");
  });
});
