import { readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath, pathToFileURL } from "node:url";
import { printPublishedSchema } from "../api/graphql/schema/index.ts";

/**
 * Writes the GraphQL SDL (api/graphql/schema/*.graphql, printed sorted) to
 * api/schema.graphql, the file clients and reviewers read.
 *   npm run schema:export            write it
 *   npm run schema:export -- --check exit 1 when the file is stale
 * test/integration/graphql/schema-export.test.ts fails when it is stale.
 */
export const SCHEMA_FILE = fileURLToPath(new URL("../api/schema.graphql", import.meta.url));

export function renderSchema(): string {
  return printPublishedSchema();
}

export function isStale(): boolean {
  let current: string;
  try {
    current = readFileSync(SCHEMA_FILE, "utf8");
  } catch {
    return true;
  }
  return current !== renderSchema();
}

function main(argv: readonly string[]): number {
  if (argv.includes("--check")) {
    if (isStale()) {
      console.error(`${SCHEMA_FILE} is stale: run npm run schema:export`);
      return 1;
    }
    console.log(`${SCHEMA_FILE} is up to date`);
    return 0;
  }
  writeFileSync(SCHEMA_FILE, renderSchema());
  console.log(`wrote ${SCHEMA_FILE}`);
  return 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = main(process.argv.slice(2));
}
