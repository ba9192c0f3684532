import { execFile, execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { DoppelNode, MemoryEventStore } from "doppel/node";
import { describe, expect, it } from "vitest";
import { DeviceCredentials } from "../../runtime/devices/auth/device-credentials.ts";
import { silentLogger } from "../../runtime/observability/logger.ts";
import { readmeCoapSnippet } from "./readme-coap-snippet.ts";
import { readmeTestSnippet } from "./readme-test-snippet.ts";
import { Thermostat } from "./readme-twin.ts";

const root = join(import.meta.dirname, "../..");
const readme = readFileSync(join(root, "README.md"), "utf8");
const blocks = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1] ?? "");

describe("README examples", () => {
  it("shows the twin of test/readme/readme-twin.ts, verbatim", () => {
    const source = readFileSync(join(import.meta.dirname, "readme-twin.ts"), "utf8");
    expect(blocks).toContain(source);
  });

  it("shows the test of test/readme/readme-test-snippet.ts, verbatim", () => {
    const source = readFileSync(join(import.meta.dirname, "readme-test-snippet.ts"), "utf8");
    const body = source.slice(source.indexOf("  const test ="), source.lastIndexOf("}"));
    const unindented = body
      .trimEnd()
      .split("\n")
      .map((line) => line.replace(/^ {2}/, ""))
      .join("\n");
    expect(blocks).toContain(`import { TestNode } from "doppel/testing";\n\n${unindented}\n`);
  });

  it("shows the pump's queued device command of twins/pump.ts, verbatim", () => {
    const pump = readFileSync(join(root, "twins/pump.ts"), "utf8");
    const shown = blocks.find((block) => block.startsWith("async calibrate("));
    expect(shown, "the README's calibrate example").toBeDefined();
    const indented = (shown ?? "")
      .split("\n")
      .map((line) => (line ? `  ${line}` : line))
      .join("\n");
    expect(pump).toContain(indented);
  });

  it("runs the README's twin test as written", async () => {
    await readmeTestSnippet();
  });

  /** A snippet function's body between `first` and `last` (excluded), unindented one level. */
  const bodyOf = (file: string, first: string, last: string) => {
    const source = readFileSync(join(import.meta.dirname, file), "utf8");
    return source
      .slice(source.indexOf(first), source.lastIndexOf(last))
      .trimEnd()
      .split("\n")
      .map((line) => line.replace(/^ {2}/, ""))
      .join("\n");
  };

  it("shows the CoAP device of test/readme/readme-coap-snippet.ts, verbatim", () => {
    const body = bodyOf("readme-coap-snippet.ts", "  const request =", "  return response.code;");
    expect(blocks).toContain(`import coap from "coap";\n\n${body}\n`);
  });

  it("runs the README's CoAP device against a node started with --coap and a provisioned credential", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "doppel-readme-coap-"));
    const { password } = new DeviceCredentials(join(dataDir, "device-credentials.json")).provision({
      type: "thermostat",
      id: "t1",
    });
    const node = await DoppelNode.start(
      { dataDir, grpc: { listen: false }, coap: { listen: "localhost:0", requireCredentials: true } },
      { twins: [Thermostat], store: new MemoryEventStore(), logger: silentLogger() },
    );
    try {
      const port = Number(node.coap?.address.split(":").at(-1));
      expect(await readmeCoapSnippet(port, "dpd_not-the-password")).toBe("4.01");
      expect(await readmeCoapSnippet(port, password)).toBe("2.04");
      expect((await node.twins.get({ type: "thermostat", id: "t1" })).reported).toEqual({
        temperature: 19.5,
      });
    } finally {
      await node.stop();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it("runs the README's curl device report as written, against a node with --http and a provisioned credential", async () => {
    // The command of the README's device example: the `$ curl ... /v1/devices/...` line and its continuation.
    const example = /\$ (curl [^\n]*\\\n[^\n]*\/v1\/devices\/[^\n]*)\n\s*(\{[^\n]*\})/.exec(readme);
    expect(example, "the README's curl device example").not.toBeNull();
    const [, command = "", shownReply = ""] = example ?? [];
    const curl = execFileSync("bash", [join(root, "scripts/infra/curl.sh")], { encoding: "utf8" }).trim();
    const dataDir = mkdtempSync(join(tmpdir(), "doppel-readme-http-"));
    const { password } = new DeviceCredentials(join(dataDir, "device-credentials.json")).provision({
      type: "thermostat",
      id: "t1",
    });
    const node = await DoppelNode.start(
      { dataDir, grpc: { listen: false }, http: { listen: "localhost:0" } },
      { twins: [Thermostat], store: new MemoryEventStore(), logger: silentLogger() },
    );
    try {
      const run = async (secret: string) =>
        (
          await promisify(execFile)(
            "bash",
            [
              "-c",
              command
                .replace("dpd_PASSWORD", secret)
                .replace("localhost:8080", node.httpAddress ?? "")
                .replace(/^curl /, `${curl} `),
            ],
            { encoding: "utf8" },
          )
        ).stdout;
      const refused = JSON.parse(await run("dpd_not-the-password")) as { status: number; code: string };
      expect(refused).toMatchObject({ status: 401, code: "UNAUTHENTICATED" });
      const reply = JSON.parse(await run(password)) as { messageId: string };
      expect(reply.messageId).toMatch(/^http:thermostat\/t1:/);
      expect(shownReply).toMatch(/^\{"messageId":"http:thermostat\/t1:/);
      expect((await node.twins.get({ type: "thermostat", id: "t1" })).reported).toEqual({
        temperature: 21.5,
      });
    } finally {
      await node.stop();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
