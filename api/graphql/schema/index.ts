import { readFileSync } from "node:fs";
import type { GraphQLSchema } from "graphql";
import { buildSchema, lexicographicSortSchema, printSchema } from "../graphql-js.ts";

/**
 * The SDL, split by subject. Resolvers are attached to the schema built from
 * it (../schema.ts); api/schema.graphql is this SDL printed (npm run schema:export).
 */
export const SDL_FILES = ["common.graphql", "tenancy.graphql", "mutations.graphql", "events.graphql", "tasks.graphql", "maskin.graphql", "vms.graphql"] as const;

export const typeDefs: string = SDL_FILES.map((file) => readFileSync(new URL(`./${file}`, import.meta.url), "utf8")).join("\n");

/** The schema without resolvers. */
export function buildTypeSchema(): GraphQLSchema {
  return buildSchema(typeDefs);
}

/** The published SDL: sorted, so the exported file changes only when the schema does. */
export function printPublishedSchema(): string {
  return `${printSchema(lexicographicSortSchema(buildTypeSchema()))}\n`;
}
