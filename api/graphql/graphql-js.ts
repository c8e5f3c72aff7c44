import { createRequire } from "node:module";

/**
 * graphql-js, always the CommonJS build, which is the one mercurius loads.
 * graphql 16 ships a CJS and an ESM build without an `exports` map: Node
 * picks CJS for `import "graphql"` (its `main`), but vite/vitest and bundlers
 * pick the ESM `module`, and then two copies meet ("Cannot use GraphQLSchema
 * from another module or realm", failing instanceof checks on errors).
 * Every value from graphql-js in this module comes from here; types may be
 * imported from "graphql" directly.
 */
const graphql = createRequire(import.meta.url)("graphql") as typeof import("graphql");

export const {
  GraphQLError,
  GraphQLObjectType,
  GraphQLScalarType,
  Kind,
  buildSchema,
  getNamedType,
  isInterfaceType,
  isObjectType,
  lexicographicSortSchema,
  parse,
  printSchema,
  specifiedRules,
  validate,
  valueFromASTUntyped,
} = graphql;

export type GraphQLError = import("graphql").GraphQLError;
export type GraphQLObjectType = import("graphql").GraphQLObjectType;
export type GraphQLScalarType = import("graphql").GraphQLScalarType;
export type Kind = import("graphql").Kind;
