import type { FastifyInstance } from "fastify";
import type { DocumentNode, GraphQLSchema } from "graphql";
import type { Kysely } from "kysely";
import mercurius from "mercurius";
import type pg from "pg";
import type { EventStore } from "../../adapters/eventstore/port.ts";
import type { ProjectionRunner } from "../../projections/index.ts";
import type { AuthenticatedActor } from "../auth/types.ts";
import { createContext, createServices, type GraphqlContext } from "./context.ts";
import { ClientError, formatExecutionErrors, RequestRejected, type ClientErrorCode } from "./errors.ts";
import { GraphQLError, parse, specifiedRules, validate } from "./graphql-js.ts";
import { checkLimits, type Variables } from "./limits.ts";
import { createSchema } from "./schema.ts";

export interface GraphqlDeps {
  readonly pool: pg.Pool;
  readonly db: Kysely<any>;
  /** The event store: commands append to it, subscriptions tail it (a PostgresEventStore in production). */
  readonly store: EventStore;
  /** For read-your-writes: mutations wait until it has applied their write. Need not drive projections itself. */
  readonly runner: ProjectionRunner;
  /**
   * Verifies the bearer token a WebSocket client sends in connection_init
   * (`{ authorization: "Bearer <token>" }`): the actor, or null to refuse the
   * connection. Without it a token in connection_init is ignored and only the
   * upgrade request's own authentication (request.actor) applies.
   */
  authenticateToken?(token: string): Promise<AuthenticatedActor | null>;
  /** How long a mutation waits for the read model before answering Accepted (default 5000 ms). */
  readonly writeWaitMs?: number;
  /** graphql-transport-ws ping interval (default 25 000 ms; 0 disables). */
  readonly keepAliveMs?: number;
}

export const GRAPHQL_PATH = "/graphql";
/** Tokens in a document: bounds parse work before any limit can be checked. */
const MAX_TOKENS = 10_000;

/**
 * GraphQL at /graphql (POST, GET for queries) and subscriptions over
 * WebSocket (graphql-transport-ws) on the same path, in an encapsulated
 * context of the given app: its error formatter and limits apply to /graphql only.
 * The resolver context carries request.actor (set by the app's auth plugin,
 * which must run first) or, for WebSocket, the actor of the connection_init token.
 */
export function graphqlModule(deps: GraphqlDeps): { register(app: FastifyInstance): Promise<void> } {
  const services = createServices(deps);
  return {
    async register(app: FastifyInstance): Promise<void> {
      if (!app.hasRequestDecorator("actor")) app.decorateRequest("actor", null);
      await app.register(async (scope) => {
        const schema = createSchema();
        await scope.register(mercurius, {
          schema,
          path: GRAPHQL_PATH,
          graphiql: false,
          graphql: { parseOptions: { maxTokens: MAX_TOKENS } },
          context: (request) => createContext(services, request.actor ?? null, request.id, request.log),
          errorFormatter: (execution, context) => formatExecutionErrors(execution, context as never),
          subscription: {
            context: (_socket, request) => createContext(services, request.actor ?? null, request.id, request.log),
            onConnect: ({ payload }) => authenticateConnection(deps, payload),
            keepAlive: deps.keepAliveMs ?? 25_000,
          },
        });

        // mercurius falls back to reading an unparsable query as a JSON-encoded AST, which no client of ours
        // sends and which feeds graphql-js documents it never validated the shape of: only GraphQL text is accepted.
        scope.graphql.addHook("preParsing", async (_schema, source) => {
          try {
            parse(source, { maxTokens: MAX_TOKENS });
          } catch (error) {
            if (error instanceof GraphQLError) throw new RequestRejected([error]);
            throw error;
          }
        });
        // Limits need the variables (`first: $n`), so they run before execution rather than as validation rules.
        scope.graphql.addHook("preExecution", async (hookSchema, document, _context, variables) => {
          rejectIfOverLimits(hookSchema, document, (variables ?? {}) as Variables);
        });
        // mercurius does not validate subscription documents at all: do it here, limits included. What is
        // thrown here reaches the client as the one error of an `error` message, bypassing the formatter.
        scope.graphql.addHook("preSubscriptionExecution", async (hookSchema, document) => {
          const invalid = validate(hookSchema, document, specifiedRules);
          if (invalid.length > 0) throw oneError("GRAPHQL_VALIDATION_FAILED", invalid);
          const overLimits = checkLimits(hookSchema, document, "unknown");
          if (overLimits.length > 0) throw oneError("BAD_USER_INPUT", overLimits);
        });
      });
    },
  };
}

function oneError(code: ClientErrorCode, errors: readonly GraphQLError[]): ClientError {
  const [first] = errors;
  if (errors.length === 1 && first instanceof ClientError) return first;
  return new ClientError(code, errors.map((error) => error.message).join("; "));
}

function rejectIfOverLimits(schema: GraphQLSchema, document: DocumentNode, variables: Variables): void {
  const errors = checkLimits(schema, document, variables);
  if (errors.length > 0) throw new RequestRejected(errors);
}

/**
 * connection_init: `{ authorization: "Bearer <token>" }` (also accepted as
 * `Authorization`, or under `headers`). A token that verifies sets the
 * connection's actor; one that does not refuses the connection. No token, or
 * no verifier configured: the connection keeps the actor of the upgrade
 * request (browsers cannot send headers there; other clients can), possibly
 * none, and then every subscription fails UNAUTHENTICATED.
 */
async function authenticateConnection(deps: GraphqlDeps, payload: unknown): Promise<boolean | Pick<GraphqlContext, "actor">> {
  const fields = (typeof payload === "object" && payload !== null ? payload : {}) as Record<string, unknown>;
  const headers = (typeof fields.headers === "object" && fields.headers !== null ? fields.headers : {}) as Record<string, unknown>;
  const raw = fields.authorization ?? fields.Authorization ?? headers.authorization ?? headers.Authorization;
  if (raw === undefined || !deps.authenticateToken) return true;
  const match = typeof raw === "string" ? /^Bearer\s+(\S+)\s*$/i.exec(raw) : null;
  if (!match) return false;
  const actor = await deps.authenticateToken(match[1]!);
  return actor ? { actor } : false;
}
