import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

/**
 * Two projects: `unit` (no servers; in-process harness, fakes, embedded store) and `integration`
 * (real NATS, Redis and Cassandra, started by scripts/test.sh). `npm test` runs both.
 *
 * Tests run the TypeScript source: `doppel`, `doppel/node`... resolve to `runtime/*.ts`, as the
 * package's `source` export condition does for tsc and for processes the tests spawn
 * (`node --conditions=source`); the published package resolves them to `dist/`.
 */
const runtime = fileURLToPath(new URL("./runtime/", import.meta.url));
export default defineConfig({
  resolve: {
    alias: [
      { find: /^doppel$/, replacement: `${runtime}index.ts` },
      { find: /^doppel\/(testing|node|client|device)$/, replacement: `${runtime}$1.ts` },
    ],
  },
  test: {
    globalSetup: ["test/packaging/global-setup.ts"],
    projects: [
      {
        extends: true,
        test: {
          name: "unit",
          include: ["test/**/*.test.ts"],
          exclude: ["test/integration/**"],
          testTimeout: 60_000,
        },
      },
      {
        extends: true,
        test: {
          name: "integration",
          include: ["test/integration/**/*.test.ts"],
          testTimeout: 120_000,
          hookTimeout: 180_000,
          fileParallelism: false,
        },
      },
    ],
  },
});
