import { spawnSync } from "node:child_process";
import { cpSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";

const ROOT = join(import.meta.dirname, "../..");
const DEPCRUISE = join(ROOT, "node_modules/dependency-cruiser/bin/dependency-cruise.mjs");

/** A copy of the sources (and the layer rules) where a test may add a forbidden import. */
function sandbox(): string {
  const dir = mkdtempSync(join(tmpdir(), "doppel-layers-"));
  for (const path of [
    "runtime",
    "cluster",
    "twins",
    "proto",
    "tsconfig.json",
    "package.json",
    ".dependency-cruiser.cjs",
  ])
    cpSync(join(ROOT, path), join(dir, path), { recursive: true });
  symlinkSync(join(ROOT, "node_modules"), join(dir, "node_modules"), "dir");
  return dir;
}

function check(dir: string) {
  const run = spawnSync(
    process.execPath,
    [DEPCRUISE, "runtime", "cluster", "twins", "--config", ".dependency-cruiser.cjs", "--output-type", "err"],
    { cwd: dir, encoding: "utf8" },
  );
  return { status: run.status, output: `${run.stdout}${run.stderr}` };
}

describe("layers: imports go one way", () => {
  const dir = sandbox();
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("passes on the sources as they are", () => {
    const run = check(dir);
    expect(run.output).not.toContain("error");
    expect(run.status).toBe(0);
  });

  it.each([
    ["core importing the engine", "runtime/core/probe.ts", 'import "../engine/engine.ts";', "layer-core"],
    ["the engine importing gRPC", "runtime/engine/probe.ts", 'import "../grpc/server.ts";', "layer-engine"],
    [
      "cluster importing runtime",
      "cluster/ring/probe.ts",
      'import "../../runtime/core/ids.ts";',
      "cluster-independent",
    ],
    [
      "the device client importing ingress",
      "runtime/devices/client/probe.ts",
      'import "../ingress/device-ingress.ts";',
      "device-client-standalone",
    ],
    ["gRPC importing devices", "runtime/grpc/probe.ts", 'import "../devices/protocol.ts";', "edges-apart"],
    [
      "a twin importing runtime by path",
      "twins/probe.ts",
      'import "../runtime/core/twin.ts";',
      "twins-by-package-name",
    ],
  ])("fails on %s, naming the import and the rule", (_what, file, source, rule) => {
    writeFileSync(join(dir, file), `${source}\n`);
    try {
      const run = check(dir);
      expect(run.status).not.toBe(0);
      expect(run.output).toContain(rule);
      expect(run.output).toContain(file);
    } finally {
      rmSync(join(dir, file));
    }
  });
});
