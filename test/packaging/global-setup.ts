import { execFileSync } from "node:child_process";
import { join } from "node:path";

/** Tests that spawn `bin/doppel.js` or import the package run the compiled code: build it if stale. */
export default function setup(): void {
  const root = join(import.meta.dirname, "../..");
  execFileSync(process.execPath, [join(root, "scripts/ensure-build.mjs")], { cwd: root, stdio: "inherit" });
}
