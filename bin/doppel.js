#!/usr/bin/env node
// The `doppel` command: runs the compiled CLI (dist/, built by `npm run build`). Twin modules
// written in TypeScript (`--twins ./my-twins.ts`) are loaded through tsx, registered only then.
import { existsSync } from "node:fs";

const main = new URL("../dist/runtime/cli/main.js", import.meta.url);
if (!existsSync(main)) {
  process.stderr.write(
    "doppel: not built yet: run `npm run build` (npm start and npm test build on their own)\n",
  );
  process.exit(1);
}
const { runAsProgram } = await import(main.href);
await runAsProgram();
