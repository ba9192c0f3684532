/**
 * The operator console's compiled files (dist/console, built by Vite from console/ by
 * `npm run build`), read once into memory at start-up and served by the HTTP listener at `/`.
 * The set is small (an HTML page, one script, one stylesheet) and fixed for the node's lifetime,
 * so serving it never touches the disk or grows. Hashed asset names are cached for a year; the
 * page itself is revalidated, so a new build is picked up on reload.
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { extname, join, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";

/** One file of the console, ready to send. */
export interface ConsoleAsset {
  readonly body: Buffer;
  readonly contentType: string;
  readonly cacheControl: string;
}

const TYPES: Readonly<Record<string, string>> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".json": "application/json",
  ".woff2": "font/woff2",
};

/**
 * Where the built console is: `dist/console` beside the compiled runtime (dist/runtime/web/ →
 * dist/console), or, when the runtime runs from its TypeScript source, the repository's dist/console.
 */
export function consoleDirectory(): string {
  const up = fileURLToPath(new URL("../../", import.meta.url));
  return import.meta.url.endsWith(".ts") ? join(up, "dist", "console") : join(up, "console");
}

/** The console's files by URL path (`/`, `/assets/index-….js`); empty when it was not built. */
export function loadConsoleAssets(directory = consoleDirectory()): ReadonlyMap<string, ConsoleAsset> {
  const assets = new Map<string, ConsoleAsset>();
  if (!existsSync(join(directory, "index.html"))) return assets;
  const walk = (folder: string) => {
    for (const name of readdirSync(folder)) {
      const path = join(folder, name);
      if (statSync(path).isDirectory()) walk(path);
      else {
        const urlPath = `/${relative(directory, path).split(sep).join("/")}`;
        const hashed = urlPath.startsWith("/assets/");
        assets.set(urlPath, {
          body: readFileSync(path),
          contentType: TYPES[extname(name)] ?? "application/octet-stream",
          cacheControl: hashed ? "public, max-age=31536000, immutable" : "no-cache",
        });
      }
    }
  };
  walk(directory);
  const page = assets.get("/index.html");
  if (page) assets.set("/", page);
  return assets;
}
