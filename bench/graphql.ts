import type { FastifyInstance } from "fastify";
import { createClient } from "graphql-ws";
import { v7 as uuidv7 } from "uuid";
import WebSocket from "ws";
import type { AuthenticatedActor } from "../api/auth/types.ts";
import { graphqlModule } from "../api/graphql/index.ts";
import { buildServer } from "../api/server.ts";
import { PostgresEventStore } from "../adapters/eventstore/postgres/store.ts";
import { createKysely, createPool } from "../adapters/postgres/connection.ts";
import { executeTenancyCommand } from "../commands/sentral/tenancy.ts";
import { ProjectionRunner, tenancyProjection } from "../projections/index.ts";
import { autocannon, dropDatabase, fixedActorAuth, freshDatabase, log, percentile, round, type BenchResult } from "./support.ts";


/**
 * GraphQL on 127.0.0.1 against a fresh database, as a tenant's client uses it:
 * - a query of 20 tenants with their projects, driven by autocannon: throughput and p99;
 * - command -> delivered on a `resourceChanged` subscription over
 *   graphql-transport-ws: p99 of the time from sending the command to the
 *   subscriber receiving its change.
 * Auth is a fixed platform-admin (token checks are not what is measured).
 */
export async function graphqlBenchmarks(options: { seconds?: number; writes?: number } = {}): Promise<BenchResult[]> {
  const seconds = options.seconds ?? 10;
  const writes = options.writes ?? 300;
  const database = "dv_bench_graphql";
  const url = await freshDatabase(database);
  const pool = createPool(url, { max: 20 });
  const db = createKysely<any>(pool);
  const store = new PostgresEventStore({ pool });
  const runner = new ProjectionRunner({ pool, store, projections: [tenancyProjection] });
  const actor: AuthenticatedActor = { kind: "user", id: "bench-admin", roles: [{ role: "platform-admin" }], issuer: "bench" };
  let app: FastifyInstance | undefined;
  const results: BenchResult[] = [];
  try {
    await runner.start();
    app = await buildServer({
      pool,
      store,
      runner,
      auth: fixedActorAuth(actor),
      graphql: graphqlModule({ pool, db, store, runner }),
      rateLimit: { max: 1_000_000_000, timeWindow: 60_000 },
    });
    const address = await app.listen({ host: "127.0.0.1", port: 0 });

    log("graphql: seeding 20 tenants with 5 projects each");
    const context = { actor: { kind: "user", id: "bench-admin" } as const, correlationId: "bench-seed" };
    const tenantIds: string[] = [];
    let last = null;
    for (let t = 0; t < 20; t++) {
      const tenantId = uuidv7();
      tenantIds.push(tenantId);
      await executeTenancyCommand(store, { type: "CreateTenant", tenantId, name: `tenant-${t}` }, context);
      for (let p = 0; p < 5; p++) {
        last = await executeTenancyCommand(store, { type: "CreateProject", tenantId, projectId: uuidv7(), name: `project-${p}` }, context);
      }
    }
    await runner.waitForPosition(tenancyProjection.name, last!.position!, 30_000);

    log(`graphql: autocannon tenants+projects query for ${seconds} s`);
    const query = await autocannon({
      url: `${address}/graphql`,
      connections: 10,
      duration: seconds,
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ query: "{ tenants(first: 20) { edges { node { id name projects(first: 5) { edges { node { id name } } } } } } }" }),
    });
    if (query.non2xx > 0 || query.errors > 0) throw new Error(`GraphQL query: ${query.non2xx} non-2xx and ${query.errors} errors`);
    results.push({ name: "GraphQL query 20 tenants + projects, 10 connections", value: Math.round(query.requests.average), unit: "req/s", target: null });
    results.push({ name: "GraphQL query p99, 10 connections", value: query.latency.p99, unit: "ms", target: null });

    log(`graphql: ${writes} commands, each until delivered on a subscription`);
    const tenantId = tenantIds[0]!;
    const client = createClient({ url: `${address.replace(/^http/, "ws")}/graphql`, webSocketImpl: WebSocket, lazy: false, retryAttempts: 0 });
    const waiting = new Map<string, () => void>();
    // A delivery can beat the command's own return (its event id is known only then).
    const seen = new Set<string>();
    const ready = new Promise<void>((resolve) => client.on("connected", () => resolve()));
    const unsubscribe = client.subscribe<{ resourceChanged: { eventId: string } }>(
      { query: `subscription { resourceChanged(tenantId: "${tenantId}") { eventId } }` },
      {
        next: ({ data }) => {
          const eventId = data?.resourceChanged.eventId;
          if (!eventId) return;
          seen.add(eventId);
          waiting.get(eventId)?.();
        },
        error: (error) => log(`graphql: subscription error ${JSON.stringify(error)}`),
        complete: () => {},
      },
    );
    await ready;
    await new Promise((resolve) => setTimeout(resolve, 300)); // the subscription is established server-side
    const delivered: number[] = [];
    for (let i = 0; i < writes; i++) {
      const started = process.hrtime.bigint();
      const result = await executeTenancyCommand(
        store,
        { type: "RenameTenant", tenantId, name: "tenant-0", displayName: `bench ${i}` },
        { ...context, correlationId: `bench-${i}` },
      );
      const eventId = result.events[0]!.id;
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`event ${eventId} not delivered within 10 s`)), 10_000);
        waiting.set(eventId, () => {
          clearTimeout(timer);
          waiting.delete(eventId);
          resolve();
        });
        if (seen.has(eventId)) waiting.get(eventId)!();
      });
      delivered.push(Number(process.hrtime.bigint() - started) / 1e6);
    }
    unsubscribe();
    await client.dispose();
    results.push({ name: "command -> delivered on a subscription p99", value: round(percentile(delivered, 0.99)), unit: "ms", target: 50, better: "lower" });
    results.push({ name: "command -> delivered on a subscription p50", value: round(percentile(delivered, 0.5)), unit: "ms", target: null });
  } finally {
    await app?.close();
    await runner.stop();
    await store.close();
    await db.destroy();
  }
  await dropDatabase(database);
  return results;
}
