#!/usr/bin/env node
// The `doppel` command. Doppel is written in TypeScript and runs from source: tsx compiles each
// module as it loads (twin modules given with --twins can be TypeScript too).
import { register } from "tsx/esm/api";

register();
await import("../runtime/cli/main.ts");
