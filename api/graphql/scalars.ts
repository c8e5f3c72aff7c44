import type { GraphQLScalarTypeConfig, ValueNode } from "graphql";
import { GraphQLError, Kind, valueFromASTUntyped } from "./graphql-js.ts";

/** Implementations of the custom scalars declared in schema/common.graphql. */
type ScalarImpl = Pick<GraphQLScalarTypeConfig<unknown, unknown>, "serialize" | "parseValue" | "parseLiteral">;

export const DateTimeScalar: ScalarImpl = {
  serialize(value) {
    const date = value instanceof Date ? value : typeof value === "string" ? new Date(value) : undefined;
    // Output that does not serialize is our bug, not the caller's: a plain error, masked and logged.
    if (!date || Number.isNaN(date.getTime())) throw new TypeError(`DateTime cannot represent ${String(value)}`);
    return date.toISOString();
  },
  parseValue(value) {
    return parseDate(value);
  },
  parseLiteral(ast) {
    if (ast.kind !== Kind.STRING) throw new GraphQLError("DateTime must be an ISO 8601 string");
    return parseDate(ast.value);
  },
};

function parseDate(value: unknown): Date {
  if (typeof value !== "string") throw new GraphQLError("DateTime must be an ISO 8601 string");
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) throw new GraphQLError("DateTime must be an ISO 8601 string");
  return date;
}

/**
 * Any integer JavaScript represents exactly. Inputs are not range-checked
 * beyond that: the command schemas do it, so a negative limit comes back as
 * a typed ValidationFailed, not as a GraphQL error.
 */
export const SafeIntScalar: ScalarImpl = {
  serialize(value) {
    const number = typeof value === "string" && /^-?\d+$/.test(value) ? Number(value) : value;
    if (typeof number !== "number" || !Number.isSafeInteger(number)) throw new TypeError(`SafeInt cannot represent ${String(value)}`);
    return number;
  },
  parseValue(value) {
    if (typeof value !== "number" || !Number.isSafeInteger(value)) {
      throw new GraphQLError("SafeInt must be an integer within ±(2^53 - 1)");
    }
    return value;
  },
  parseLiteral(ast) {
    if (ast.kind !== Kind.INT) throw new GraphQLError("SafeInt must be an integer within ±(2^53 - 1)");
    const value = Number(ast.value);
    if (!Number.isSafeInteger(value)) throw new GraphQLError("SafeInt must be an integer within ±(2^53 - 1)");
    return value;
  },
};

export const JSONScalar: ScalarImpl = {
  serialize: (value) => value,
  parseValue: (value) => value,
  parseLiteral: (ast: ValueNode, variables?: { [key: string]: unknown } | null) => valueFromASTUntyped(ast, variables ?? undefined),
};
