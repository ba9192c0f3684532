/**
 * Builds the operator console (console/) into dist/console, which the node serves at `/` on its
 * HTTP listener. Preact for the views (JSX compiled by Vite's Oxc transform), uPlot for charts.
 * Relative asset URLs, so the console works behind a path prefix too.
 */
import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

export default defineConfig({
  root: fileURLToPath(new URL(".", import.meta.url)),
  base: "./",
  oxc: { jsx: { runtime: "automatic", importSource: "preact" } },
  build: {
    outDir: fileURLToPath(new URL("../dist/console", import.meta.url)),
    emptyOutDir: true,
    target: "es2022",
    chunkSizeWarningLimit: 200,
  },
  logLevel: "warn",
});
