// `npm run build`: compiles runtime/, cluster/ and twins/ to ESM JavaScript with type declarations
// in dist/ (tsc, tsconfig.build.json: relative `.ts` imports become `.js`), and copies the protobuf
// contracts beside them (dist/proto: the gRPC server, the client and the device codecs load them
// at run time), then builds the operator console (console/, Vite) into dist/console, which the
// node serves at `/` on its HTTP listener. Plain Node, so it runs before anything is compiled.
import { execFileSync } from "node:child_process";
import { cpSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const dist = join(root, "dist");
const require = createRequire(import.meta.url);
const tsc = require.resolve("typescript/bin/tsc");
const vite = join(dirname(require.resolve("vite/package.json")), "bin", "vite.js");

if (process.argv.includes("--clean")) rmSync(dist, { recursive: true, force: true });
mkdirSync(dist, { recursive: true });
execFileSync(process.execPath, [tsc, "-p", join(root, "tsconfig.build.json")], {
  cwd: root,
  stdio: "inherit",
});
cpSync(join(root, "proto"), join(dist, "proto"), { recursive: true });
execFileSync(process.execPath, [vite, "build", "--config", join(root, "console", "vite.config.ts")], {
  cwd: root,
  stdio: "inherit",
});
writeFileSync(join(dist, ".built"), `${new Date().toISOString()}\n`);
