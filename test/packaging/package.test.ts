import { execFileSync, spawnSync } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const ROOT = join(import.meta.dirname, "../..");
const LIST_LOADS = join(import.meta.dirname, "fixtures/list-loads.mjs");

/** The npm packages a fresh process loads when it imports `entry` from the compiled package. */
function packagesLoadedBy(entry: string, lister = LIST_LOADS): { packages: Set<string>; modules: string[] } {
  const out = execFileSync(process.execPath, [lister, entry], { encoding: "utf8" });
  const modules = out.split("\n").filter(Boolean);
  const packages = new Set<string>();
  for (const url of modules) {
    const match = /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url);
    if (match?.[1] && match[1] !== "doppel") packages.add(match[1]);
  }
  return { packages, modules };
}

const SERVER_SIDE = ["better-sqlite3", "cassandra-driver", "redis"];
const NATS = ["@nats-io/nats-core", "@nats-io/jetstream", "@nats-io/transport-node"];
const GRPC = ["@grpc/grpc-js", "@grpc/proto-loader", "@grpc/reflection"];

describe("entry points: each loads only what its role needs (compiled package, fresh process)", () => {
  it.each([
    [
      "doppel",
      [...SERVER_SIDE, ...NATS, ...GRPC, "protobufjs", "pino", "@opentelemetry/api"],
      ["runtime/engine/", "runtime/node/"],
    ],
    [
      "doppel/client",
      [...SERVER_SIDE, ...NATS, "@grpc/reflection", "pino"],
      ["runtime/node/", "runtime/engine/", "runtime/grpc/server"],
    ],
    [
      "doppel/device",
      [...SERVER_SIDE, ...GRPC],
      ["runtime/node/", "runtime/engine/", "runtime/devices/ingress/"],
    ],
    [
      "doppel/testing",
      [...SERVER_SIDE, ...NATS, ...GRPC],
      ["runtime/grpc/", "runtime/persistence/cassandra/store"],
    ],
  ])("%s never loads %j", (entry, forbiddenPackages, forbiddenModules) => {
    const { packages, modules } = packagesLoadedBy(entry);
    for (const name of forbiddenPackages) expect(packages, `${entry} loaded ${name}`).not.toContain(name);
    for (const path of forbiddenModules) {
      expect(
        modules.filter((url) => url.includes(`/dist/${path}`)),
        `${entry} loaded ${path}`,
      ).toEqual([]);
    }
    expect(modules.some((url) => url.includes("/dist/runtime/"))).toBe(true);
  });

  it("doppel/node loads the node with every store and transport", () => {
    const { packages } = packagesLoadedBy("doppel/node");
    for (const name of ["better-sqlite3", "cassandra-driver", "@nats-io/nats-core"])
      expect(packages).toContain(name);
  });
});

describe("npm pack: compiled JavaScript, type declarations and the proto contracts", () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "doppel-pack-"));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("packs no TypeScript source, and a declaration beside every module", () => {
    const json = execFileSync("npm", ["pack", "--dry-run", "--json"], { cwd: ROOT, encoding: "utf8" });
    const files = (JSON.parse(json) as { files: { path: string }[] }[])[0]!.files.map((f) => f.path);
    expect(files.filter((f) => f.endsWith(".ts") && !f.endsWith(".d.ts"))).toEqual([]);
    expect(files).toEqual(
      expect.arrayContaining([
        "bin/doppel.js",
        "proto/doppel/v1/twins.proto",
        "dist/proto/doppel/v1/twins.proto",
      ]),
    );
    for (const entry of ["index", "testing", "node", "client", "device"]) {
      expect(files).toContain(`dist/runtime/${entry}.js`);
      expect(files).toContain(`dist/runtime/${entry}.d.ts`);
    }
    expect(files.filter((f) => !/^(bin|dist|proto)\/|^(package\.json|README\.md|LICENSE)$/.test(f))).toEqual(
      [],
    );
  });

  it("installed from its tarball, it serves every entry point and runs the doppel command", () => {
    execFileSync("npm", ["pack", "--pack-destination", dir], { cwd: ROOT, stdio: "ignore" });
    const tarball = readdirSync(dir).find((f) => f.endsWith(".tgz"))!;
    const app = join(dir, "app");
    const installed = join(app, "node_modules/doppel");
    mkdirSync(installed, { recursive: true });
    execFileSync("tar", ["-xzf", join(dir, tarball), "-C", installed, "--strip-components=1"]);
    // The package's dependencies, as npm would have installed them beside it.
    for (const name of readdirSync(join(ROOT, "node_modules"))) {
      if (name.startsWith(".") || name === "doppel") continue;
      symlinkSync(join(ROOT, "node_modules", name), join(app, "node_modules", name));
    }
    // The lister imports by package name from where it lies: inside the app, that is the installed package.
    for (const file of ["list-loads.mjs", "record-loads.mjs"])
      copyFileSync(join(import.meta.dirname, "fixtures", file), join(app, file));
    for (const entry of ["doppel", "doppel/client", "doppel/device", "doppel/testing", "doppel/node"]) {
      const { modules } = packagesLoadedBy(entry, join(app, "list-loads.mjs"));
      expect(modules.some((url) => url.includes("/app/node_modules/doppel/dist/"))).toBe(true);
    }
    const help = spawnSync(process.execPath, [join(installed, "bin/doppel.js"), "--help"], {
      encoding: "utf8",
    });
    expect(help.status).toBe(0);
    expect(help.stdout).toContain("Usage: doppel");
  });
});
