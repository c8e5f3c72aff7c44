import type { FastifyInstance } from "fastify";
import { createClient, type Client } from "graphql-ws";
import WebSocket from "ws";
import type { EventStore } from "../../../../adapters/eventstore/port.ts";
import { buildServer } from "../../../../api/server.ts";
import { graphqlModule, type GraphqlDeps } from "../../../../api/graphql/index.ts";
import { inventoryProjection, maskinHostsProjection, ProjectionRunner, tasksProjection, tenancyProjection } from "../../../../projections/index.ts";
import { createHarness, type ProjectionHarness } from "../../projections/support.ts";
import { actorHeader, testAuth } from "../../api/support/test-auth.ts";
import type { TestActor } from "../../api/support/harness.ts";
import { authenticateTestToken, tokenFor } from "./test-tokens.ts";

export interface GraphqlResponse<T = any> {
  readonly status: number;
  readonly body: { data?: T | null; errors?: Array<{ message: string; extensions?: Record<string, unknown>; path?: unknown[] }> };
  readonly raw: string;
}

export interface GraphqlHarness {
  readonly db: ProjectionHarness;
  readonly runner: ProjectionRunner;
  readonly app: FastifyInstance;
  /** POST /graphql as `actor` (null: anonymous). */
  gql<T = any>(actor: TestActor | null, query: string, variables?: Record<string, unknown>): Promise<GraphqlResponse<T>>;
  /** A graphql-ws client on the listening server, authenticated by a connection_init token for `actor`. */
  ws(actor: TestActor | null, options?: { connectionParams?: Record<string, unknown>; upgradeHeaders?: Record<string, string> }): Promise<Client>;
  /** Events stored in the log (to prove that a refused input appended nothing). */
  eventCount(): Promise<number>;
  /** Store subscriptions the GraphQL module has open (each subscription tails the log until stopped). */
  openSubscriptions(): number;
  dispose(): Promise<void>;
}

/** A fresh database, a running tenancy runner, and buildServer with the test auth and the GraphQL module. */
export async function createGraphqlHarness(options: Partial<Pick<GraphqlDeps, "writeWaitMs">> = {}): Promise<GraphqlHarness> {
  const db = await createHarness();
  const runner = new ProjectionRunner({ pool: db.pool, store: db.store, projections: [tenancyProjection, tasksProjection, inventoryProjection, maskinHostsProjection], pollIntervalMs: 200 });
  await runner.start();
  // The module's store, counting the log subscriptions it opens and stops.
  let open = 0;
  const store: EventStore = Object.create(db.store);
  store.subscribe = (subscribeOptions) => {
    const subscription = db.store.subscribe(subscribeOptions);
    open++;
    let stopped = false;
    return {
      [Symbol.asyncIterator]: () => subscription[Symbol.asyncIterator](),
      async stop() {
        if (!stopped) {
          stopped = true;
          open--;
        }
        await subscription.stop();
      },
    };
  };
  const app = await buildServer({
    pool: db.pool,
    store: db.store,
    runner,
    auth: testAuth,
    rateLimit: { max: 1_000_000, timeWindow: 60_000 },
    graphql: graphqlModule({ pool: db.pool, db: db.db, store, runner, authenticateToken: authenticateTestToken, ...options }),
  });
  const clients: Client[] = [];
  let url: string | undefined;
  return {
    db,
    runner,
    app,
    async gql(actor, query, variables) {
      const response = await app.inject({
        method: "POST",
        url: "/graphql",
        headers: { "content-type": "application/json", ...actorHeader(actor) },
        payload: JSON.stringify({ query, ...(variables ? { variables } : {}) }),
      });
      return { status: response.statusCode, body: JSON.parse(response.body), raw: response.body };
    },
    async ws(actor, wsOptions = {}) {
      if (!url) {
        const address = await app.listen({ port: 0, host: "127.0.0.1" });
        url = `${address.replace(/^http/, "ws")}/graphql`;
      }
      const headers = wsOptions.upgradeHeaders;
      const client = createClient({
        url,
        webSocketImpl: headers
          ? class extends WebSocket {
              constructor(address: string, protocols?: string | string[]) {
                super(address, protocols, { headers });
              }
            }
          : WebSocket,
        retryAttempts: 0,
        lazy: true,
        connectionParams: wsOptions.connectionParams ?? (actor ? { authorization: `Bearer ${tokenFor(actor)}` } : {}),
      });
      clients.push(client);
      return client;
    },
    async eventCount() {
      const { rows } = await db.pool.query<{ n: string }>("select count(*) as n from eventstore.events");
      return Number(rows[0]!.n);
    },
    openSubscriptions: () => open,
    async dispose() {
      for (const client of clients) await client.dispose();
      await app.close();
      await runner.stop();
      await db.dispose();
    },
  };
}

export { actors } from "../../api/support/test-auth.ts";
export type { TestActor };
