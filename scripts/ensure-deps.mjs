// Installs the project's npm dependencies when they are missing or were installed from another
// package-lock.json, so `npm start` and `npm test` work on a fresh clone and after a pull that
// changed dependencies. Plain Node: it runs before anything is installed.
import { execSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const lockHash = createHash("sha256")
  .update(readFileSync(join(root, "package-lock.json")))
  .digest("hex");
const stamp = join(root, "node_modules", ".doppel-installed-lock");
const installedHash = existsSync(stamp) ? readFileSync(stamp, "utf8").trim() : "";
if (installedHash !== lockHash) {
  console.error("doppel: installing npm dependencies (npm ci)...");
  execSync("npm ci --no-audit --no-fund", { cwd: root, stdio: "inherit" });
  writeFileSync(stamp, `${lockHash}\n`);
}
