import type { GraphQLResolveInfo } from "graphql";
import type { GraphqlContext } from "../context.ts";

/** A field resolver as graphql-js calls it, typed by its parent value and arguments. */
export type FieldResolver<Source = unknown, Args = Record<string, unknown>, Result = unknown> = (
  source: Source,
  args: Args,
  context: GraphqlContext,
  info: GraphQLResolveInfo,
) => Result | Promise<Result>;

export interface SubscriptionResolver<Args = Record<string, unknown>, Payload = unknown> {
  subscribe: (source: unknown, args: Args, context: GraphqlContext, info: GraphQLResolveInfo) => Promise<AsyncIterable<Payload>>;
  resolve: (payload: Payload) => unknown;
}

/** Type name -> field name -> resolver. */
export type ResolverMap = Record<string, Record<string, FieldResolver<any, any> | SubscriptionResolver<any, any>>>;
