// Builds dist/ when it is missing or older than any source it is compiled from, so `npm start`
// and `npm test` work on a fresh clone and after every edit. Plain Node.
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const stamp = join(root, "dist", ".built");
const sources = ["runtime", "cluster", "twins", "proto", "console"];
const configs = ["package.json", "tsconfig.json", "tsconfig.build.json", "package-lock.json"];

/** The newest modification time under `path`. */
function newest(path) {
  const stat = statSync(path);
  if (!stat.isDirectory()) return stat.mtimeMs;
  let latest = stat.mtimeMs;
  for (const entry of readdirSync(path)) latest = Math.max(latest, newest(join(path, entry)));
  return latest;
}

const built = existsSync(stamp) ? statSync(stamp).mtimeMs : 0;
const latest = Math.max(...[...sources, ...configs].map((p) => newest(join(root, p))));
if (latest > built) {
  console.error("doppel: compiling (npm run build)...");
  execFileSync(process.execPath, [join(root, "scripts", "build.mjs")], { cwd: root, stdio: "inherit" });
}
