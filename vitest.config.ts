import { defineConfig } from "vitest/config";

// Suites that need a server this machine cannot have run only when one is named,
// instead of being reported as skipped.
const liveOnly = process.env.EVENTSTORE_URL?.trim() ? [] : ["test/integration/eventstoredb/live.test.ts"];

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    exclude: ["**/node_modules/**", ...liveOnly],
    globalSetup: ["test/support/global-setup.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Two cores: integration files each own a database, so a little parallelism pays off.
    maxWorkers: 2,
  },
});
