import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";

/**
 * The deployment files (Dockerfile, compose.yaml, the Helm chart) pass the static validator, and
 * the validator catches broken ones. Nothing is built or started: scripts/deploy/validate.sh
 * installs its tools (helm, kubeconform, docker compose, nats-server) from the Go module proxy into
 * .infra on first use, which takes minutes, hence the long timeouts.
 */

const ROOT = join(import.meta.dirname, "../..");
const VALIDATE = join(ROOT, "scripts/deploy/validate.sh");
const CHART = "deploy/helm/doppel";
const FIRST_RUN = 40 * 60_000; // building the tools the first time on two cores
const CACHED = 10 * 60_000;

interface Run {
  readonly code: number;
  readonly stdout: string;
  /** stdout and stderr together. */
  readonly output: string;
}

/** Runs `validate.sh ARGS` to completion. */
function validate(args: readonly string[], timeout: number): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      "bash",
      [VALIDATE, ...args],
      { cwd: ROOT, timeout, maxBuffer: 64 * 1024 * 1024 },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === "number" ? error.code : 1) : 0;
        resolve({ code, stdout, output: `${stdout}\n${stderr}` });
      },
    );
  });
}

const scratch = mkdtempSync(join(tmpdir(), "doppel-deploy-test-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe("deployment files", () => {
  it(
    "deploy: compose.yaml, the NATS config, the Helm chart and the Dockerfile pass the validator",
    async () => {
      const run = await validate([], FIRST_RUN);
      expect(run.output).toContain("all deployment checks passed");
      expect(run.code).toBe(0);
    },
    FIRST_RUN,
  );

  it(
    "deploy: the chart refuses to render with insecure=false and no TLS secret, saying what is missing",
    async () => {
      const run = await validate(["helm", "template", "doppel", CHART, "--set", "insecure=false"], CACHED);
      expect(run.code).not.toBe(0);
      expect(run.output).toContain("tls.secretName is required");
    },
    CACHED,
  );

  it(
    "deploy: the chart renders with a TLS secret and an API keys secret, and no --insecure",
    async () => {
      const tlsOnly = await validate(
        ["helm", "template", "doppel", CHART, "--set", "tls.secretName=doppel-tls"],
        CACHED,
      );
      expect(tlsOnly.code).not.toBe(0);
      expect(tlsOnly.output).toContain("apiKeys.secretName is required");
      const run = await validate(
        [
          "helm",
          "template",
          "doppel",
          CHART,
          "--set",
          "tls.secretName=doppel-tls",
          "--set",
          "apiKeys.secretName=doppel-api-keys",
        ],
        CACHED,
      );
      expect(run.code).toBe(0);
      expect(run.stdout).toContain("--tls-cert");
      expect(run.stdout).toContain("--api-keys");
      expect(run.stdout).not.toContain("--insecure");
    },
    CACHED,
  );

  it(
    "deploy: kubeconform refuses a manifest with a misspelt field, naming it",
    async () => {
      const rendered = await validate(
        ["helm", "template", "doppel", CHART, "--set", "insecure=true"],
        CACHED,
      );
      expect(rendered.code).toBe(0);
      const broken = rendered.stdout.replace(/^( {14})containerPort: 50051$/m, "$1containerPrt: 50051");
      expect(broken).not.toBe(rendered.stdout);
      const file = join(scratch, "broken.yaml");
      writeFileSync(file, broken);
      const run = await validate(["kubeconform", file], CACHED);
      expect(run.code).not.toBe(0);
      expect(run.output).toContain("containerPrt");
      expect(run.output).toMatch(/StatefulSet doppel is invalid/);
    },
    CACHED,
  );

  it(
    "deploy: kubeconform accepts the same manifests unbroken (the failure above is the field)",
    async () => {
      const rendered = await validate(
        ["helm", "template", "doppel", CHART, "--set", "insecure=true"],
        CACHED,
      );
      const file = join(scratch, "valid.yaml");
      writeFileSync(file, rendered.stdout);
      const run = await validate(["kubeconform", file], CACHED);
      expect(run.output).toContain("Invalid: 0, Errors: 0");
      expect(run.code).toBe(0);
      expect(readFileSync(file, "utf8")).toContain("kind: StatefulSet");
    },
    CACHED,
  );
});
