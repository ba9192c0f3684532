/**
 * The REST contract, checked against a real node (SQLite store, devices over the real nats-server
 * of scripts/infra/nats.sh): the OpenAPI 3.1 document the node serves validates with a maintained
 * validator (@seriousme/openapi-schema-validator, the OpenAPI Initiative's JSON Schemas), and
 * Schemathesis (scripts/infra/schemathesis.sh installs it) fuzzes every operation from that
 * document — valid and invalid inputs of every kind (paths, queries, headers, bodies, media types,
 * methods, missing and wrong credentials) — and checks every response against it: documented
 * status, media type, headers and body schema, never a 5xx, invalid input refused and valid input
 * accepted, authentication not ignored. A fixed seed and a bounded number of examples per
 * operation keep the run reproducible; the generated calls are kept in test-results/ (JUnit).
 */
import { execFile, execFileSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { Validator } from "@seriousme/openapi-schema-validator";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { natsUrl } from "../nats/harness.ts";
import { type RestNode, startRestNode } from "./harness.ts";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "../../..");
const REPORTS = join(ROOT, "test-results", "rest-contract");

let st: string | undefined;
/** The `st` command, installed on first use (a minute or less from PyPI): called in beforeAll. */
function installedSchemathesis(): string {
  st ??= execFileSync("bash", [join(ROOT, "scripts/infra/schemathesis.sh")], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "inherit"],
  }).trim();
  return st;
}

/** Runs Schemathesis against the node's served document; resolves with its exit code and output. */
async function schemathesis(url: string, args: readonly string[]): Promise<{ code: number; output: string }> {
  mkdirSync(REPORTS, { recursive: true });
  const st = installedSchemathesis();
  try {
    const { stdout, stderr } = await promisify(execFile)(
      st,
      [
        "--config-file",
        join(ROOT, "test/integration/web/schemathesis.toml"),
        "run",
        `${url}/v1/openapi.json`,
        ...args,
      ],
      {
        maxBuffer: 64 * 1024 * 1024,
        cwd: REPORTS, // its own cache (.schemathesis/) stays out of the work tree
        env: { ...process.env, NO_COLOR: "1", SCHEMATHESIS_TELEMETRY: "false" },
      },
    );
    return { code: 0, output: stdout + stderr };
  } catch (error) {
    const failed = error as { code?: number; stdout?: string; stderr?: string };
    return { code: failed.code ?? -1, output: `${failed.stdout ?? ""}${failed.stderr ?? ""}` };
  }
}

/** The options every run shares: fixed seed, bounded examples, no example database, one worker. */
function fuzzOptions(name: string, maxExamples: number): string[] {
  return [
    "--seed=20261202",
    `--max-examples=${maxExamples}`,
    "--generation-database=none",
    "--workers=1",
    "--no-color",
    "--suppress-health-check=all",
    // The WebSocket watch cannot be exercised by an HTTP fuzzer (a plain GET is refused by design);
    // watch.test.ts covers it.
    "--exclude-operation-id=watchTwin",
    "--request-timeout=30",
    "--report=junit",
    `--report-junit-path=${join(REPORTS, `${name}.junit.xml`)}`,
  ];
}

describe("REST contract (OpenAPI document, Schemathesis against a real node)", () => {
  let rest: RestNode;

  beforeAll(async () => {
    installedSchemathesis(); // under the hook's longer timeout, not a test's
    rest = await startRestNode({
      keys: {
        admin: { scopes: ["read", "write", "command", "admin"] },
        reader: { scopes: ["read"], types: ["thermostat"] },
      },
      config: { nats: { servers: natsUrl() }, shards: 4 },
    });
    // A few twins, so reads of the example ids find something as well as 404s.
    for (const id of ["t1", "t2"]) {
      const answer = await rest.call("POST", `/v1/twins/thermostat/${id}/commands/setTarget`, {
        token: rest.keys["admin"],
        body: { celsius: 21 },
      });
      expect(answer.status).toBe(200);
    }
  });
  afterAll(() => rest?.stop());

  it("serves an OpenAPI 3.1 document that a maintained validator accepts", async () => {
    const served = await rest.call("GET", "/v1/openapi.json");
    expect(served.status).toBe(200);
    const validator = new Validator();
    const result = await validator.validate(served.body as Record<string, unknown>);
    expect(result.errors ?? []).toEqual([]);
    expect(result.valid).toBe(true);
    expect(validator.version).toBe("3.1");
  });
  it("answers every generated call as its document says, never with a 5xx (bearer key with every scope)", async () => {
    const { code, output } = await schemathesis(rest.url, [
      "--checks=all",
      `--header=Authorization: Bearer ${rest.keys["admin"]}`,
      ...fuzzOptions("admin", 25),
    ]);
    if (code !== 0) console.error(output);
    expect(code, "schemathesis found failures (see its report above)").toBe(0);
  });

  it("answers a key with fewer scopes as documented too (403 problems, never a 5xx)", async () => {
    const { code, output } = await schemathesis(rest.url, [
      // Valid calls a read-only key may not make are refused (403), not accepted: not a failure.
      "--checks=all",
      "--exclude-checks=positive_data_acceptance",
      `--header=Authorization: Bearer ${rest.keys["reader"]}`,
      ...fuzzOptions("reader", 10),
    ]);
    if (code !== 0) console.error(output);
    expect(code, "schemathesis found failures (see its report above)").toBe(0);
  });
});
