import type { GraphQLFieldConfig, GraphQLSchema } from "graphql";
import { GraphQLObjectType, GraphQLScalarType } from "./graphql-js.ts";
import { environmentResolvers } from "./resolvers/environments.ts";
import { eventResolvers } from "./resolvers/events.ts";
import { hostResolvers } from "./resolvers/hosts.ts";
import { nodeResolvers } from "./resolvers/node.ts";
import { projectResolvers } from "./resolvers/projects.ts";
import { quotaResolvers } from "./resolvers/quotas.ts";
import { taskResolvers } from "./resolvers/tasks.ts";
import { tenantResolvers } from "./resolvers/tenants.ts";
import { vmResolvers } from "./resolvers/vms.ts";
import type { ResolverMap } from "./resolvers/types.ts";
import { DateTimeScalar, JSONScalar, SafeIntScalar } from "./scalars.ts";
import { buildTypeSchema } from "./schema/index.ts";

const RESOLVERS: readonly ResolverMap[] = [
  tenantResolvers,
  projectResolvers,
  environmentResolvers,
  quotaResolvers,
  nodeResolvers,
  eventResolvers,
  taskResolvers,
  hostResolvers,
  vmResolvers,
];

const SCALARS = { DateTime: DateTimeScalar, SafeInt: SafeIntScalar, JSON: JSONScalar } as const;

/**
 * The executable schema: the SDL with the resolvers of every module attached.
 * Interfaces and unions resolve by the `__typename` each view carries.
 * Fails at startup when a resolver names a field the SDL lacks (or twice).
 */
export function createSchema(): GraphQLSchema {
  const schema = buildTypeSchema();
  for (const [name, impl] of Object.entries(SCALARS)) {
    const type = schema.getType(name);
    if (!(type instanceof GraphQLScalarType)) throw new Error(`scalar ${name} is not in the SDL`);
    Object.assign(type, impl);
  }
  const seen = new Set<string>();
  for (const map of RESOLVERS) {
    for (const [typeName, fields] of Object.entries(map)) {
      const type = schema.getType(typeName);
      if (!(type instanceof GraphQLObjectType)) throw new Error(`resolvers for ${typeName}, which is not an object type of the SDL`);
      const defined = type.getFields();
      for (const [fieldName, resolver] of Object.entries(fields)) {
        const field = defined[fieldName] as (GraphQLFieldConfig<unknown, unknown> & { name: string }) | undefined;
        if (!field) throw new Error(`resolver for ${typeName}.${fieldName}, which the SDL does not define`);
        if (seen.has(`${typeName}.${fieldName}`)) throw new Error(`two resolvers for ${typeName}.${fieldName}`);
        seen.add(`${typeName}.${fieldName}`);
        if (typeof resolver === "function") {
          field.resolve = resolver as GraphQLFieldConfig<unknown, unknown>["resolve"];
        } else {
          field.subscribe = resolver.subscribe as GraphQLFieldConfig<unknown, unknown>["subscribe"];
          field.resolve = resolver.resolve as GraphQLFieldConfig<unknown, unknown>["resolve"];
        }
      }
    }
  }
  return schema;
}
