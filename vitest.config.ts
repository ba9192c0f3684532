import { defineConfig } from "vitest/config";

/**
 * Two projects: `unit` (no servers; in-process harness, fakes, embedded store) and `integration`
 * (real NATS, Redis and Cassandra, started by scripts/test.sh). `npm test` runs both.
 */
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: "unit",
          include: ["test/**/*.test.ts"],
          exclude: ["test/integration/**"],
          testTimeout: 20_000,
        },
      },
      {
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
