import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from "fastify";
import { inventoryProjection, maskinVmsProjection, ProjectionRunner, tasksProjection, tenancyProjection } from "../../../../projections/index.ts";
import { buildServer, type ServerOptions } from "../../../../api/server.ts";
import { createHarness, type ProjectionHarness } from "../../projections/support.ts";
import { actorHeader, testAuth } from "./test-auth.ts";
import type { AuthenticatedActor } from "../../../../api/auth/types.ts";

export type TestActor = Omit<AuthenticatedActor, "issuer">;

export interface ApiHarness {
  readonly db: ProjectionHarness;
  readonly runner: ProjectionRunner;
  readonly app: FastifyInstance;
  /** app.inject as `actor` (null: anonymous). */
  call(actor: TestActor | null, options: InjectOptions): Promise<LightMyRequestResponse>;
  /**
   * Every event written so far, counted in the table: unlike store.headPosition(),
   * not held back by other test files' open transactions on the shared server.
   */
  written(): Promise<{ count: number; last: string | null }>;
  dispose(): Promise<void>;
}

/** A fresh database, a running tenancy runner and a server on it with the test-only auth. */
export async function createApiHarness(overrides: Partial<ServerOptions> = {}): Promise<ApiHarness> {
  const db = await createHarness();
  const runner = new ProjectionRunner({ pool: db.pool, store: db.store, projections: [tenancyProjection, tasksProjection, inventoryProjection, maskinVmsProjection], pollIntervalMs: 200 });
  await runner.start();
  const app = await buildServer({
    pool: db.pool,
    store: db.store,
    runner,
    auth: testAuth,
    rateLimit: { max: 100_000, timeWindow: 60_000 },
    // Generous: other test files' open transactions on the shared server can hold the log back for a moment.
    readYourWrites: { writeWaitMs: 20_000, readWaitMs: 20_000 },
    // The same reason: transactions held open elsewhere on the server age the unapplied events (xids are
    // server-wide), so the default 10 s lag bound can flip /readyz to 503 under a full parallel run.
    readiness: { maxLagMs: 120_000 },
    ...overrides,
  });
  return {
    db,
    runner,
    app,
    call(actor, options) {
      return app.inject({ ...options, headers: { ...actorHeader(actor), ...(options.headers ?? {}) } });
    },
    async written() {
      const { rows } = await db.pool.query<{ count: string; last: string | null }>(
        "select count(*) as count, max(global_position)::text as last from eventstore.events",
      );
      return { count: Number(rows[0]!.count), last: rows[0]!.last };
    },
    async dispose() {
      await app.close();
      await runner.stop();
      await db.dispose();
    },
  };
}
