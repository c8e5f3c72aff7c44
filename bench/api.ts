import type { FastifyInstance } from "fastify";
import { v7 as uuidv7 } from "uuid";
import type { AuthenticatedActor } from "../api/auth/types.ts";
import { buildServer } from "../api/server.ts";
import { PostgresEventStore } from "../adapters/eventstore/postgres/store.ts";
import { createPool } from "../adapters/postgres/connection.ts";
import { executeTenancyCommand } from "../commands/sentral/tenancy.ts";
import { ProjectionRunner, tenancyProjection } from "../projections/index.ts";
import { autocannon, dropDatabase, fixedActorAuth, freshDatabase, log, percentile, round, type BenchResult } from "./support.ts";


/**
 * The REST API on 127.0.0.1 against a fresh database:
 * - GET one tenant and GET a page of 50 projects, driven by autocannon
 *   (10 connections, `seconds` each): throughput and p99 latency;
 * - command -> visible in the read model: executeTenancyCommand, then
 *   runner.waitForPosition for its position, sequentially; p99 of the sum;
 * - the same through HTTP: a POST that answers once the read model shows it.
 * Auth is a fixed platform-admin (the identity plugin's token check is not
 * what is measured); the rate limit is set out of the way.
 */
export async function apiBenchmarks(options: { seconds?: number; writes?: number } = {}): Promise<BenchResult[]> {
  const seconds = options.seconds ?? 10;
  const writes = options.writes ?? 500;
  const database = "dv_bench_api";
  const url = await freshDatabase(database);
  const pool = createPool(url, { max: 20 });
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
      rateLimit: { max: 1_000_000_000, timeWindow: 60_000 },
    });
    const address = await app.listen({ host: "127.0.0.1", port: 0 });

    log("api: seeding a tenant with 100 projects");
    const context = { actor: { kind: "user", id: "bench-admin" } as const, correlationId: "bench-seed" };
    const tenantId = uuidv7();
    await executeTenancyCommand(store, { type: "CreateTenant", tenantId, name: "bench" }, context);
    let last = null;
    for (let p = 0; p < 100; p++) {
      last = await executeTenancyCommand(store, { type: "CreateProject", tenantId, projectId: uuidv7(), name: `project-${p}` }, context);
    }
    await runner.waitForPosition(tenancyProjection.name, last!.position!, 30_000);

    const drive = async (name: string, path: string) => {
      log(`api: autocannon ${path} for ${seconds} s`);
      const result = await autocannon({ url: `${address}${path}`, connections: 10, duration: seconds });
      if (result.non2xx > 0 || result.errors > 0) {
        throw new Error(`${name}: ${result.non2xx} non-2xx answers and ${result.errors} errors of ${result.requests.total}`);
      }
      return result;
    };
    const get = await drive("GET tenant", `/v1/tenants/${tenantId}`);
    results.push({ name: "REST GET tenant, 10 connections", value: Math.round(get.requests.average), unit: "req/s", target: 2_000, better: "higher" });
    results.push({ name: "REST GET tenant p99, 10 connections", value: get.latency.p99, unit: "ms", target: 20, better: "lower" });
    const list = await drive("list projects", `/v1/tenants/${tenantId}/projects?limit=50`);
    results.push({ name: "REST list 50 projects, 10 connections", value: Math.round(list.requests.average), unit: "req/s", target: 500, better: "higher" });
    results.push({ name: "REST list 50 projects p99, 10 connections", value: list.latency.p99, unit: "ms", target: 50, better: "lower" });

    log(`api: ${writes} commands, each until visible in the read model`);
    const visible: number[] = [];
    for (let i = 0; i < writes; i++) {
      const started = process.hrtime.bigint();
      const result = await executeTenancyCommand(
        store,
        { type: "RenameTenant", tenantId, name: "bench", displayName: `bench ${i}` },
        { ...context, correlationId: `bench-${i}` },
      );
      await runner.waitForPosition(tenancyProjection.name, result.position!, 10_000);
      visible.push(Number(process.hrtime.bigint() - started) / 1e6);
    }
    results.push({ name: "command -> visible in read model p99", value: round(percentile(visible, 0.99)), unit: "ms", target: 25, better: "lower" });
    results.push({ name: "command -> visible in read model p50", value: round(percentile(visible, 0.5)), unit: "ms", target: null });

    log(`api: ${writes} REST writes answered from the read model`);
    const http: number[] = [];
    for (let i = 0; i < writes; i++) {
      const started = process.hrtime.bigint();
      const response = await fetch(`${address}/v1/tenants/${tenantId}`, {
        method: "PATCH",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ displayName: `http ${i}` }),
      });
      await response.arrayBuffer();
      if (response.status !== 200) throw new Error(`PATCH answered ${response.status}`);
      http.push(Number(process.hrtime.bigint() - started) / 1e6);
    }
    results.push({ name: "REST PATCH -> answered as visible p99", value: round(percentile(http, 0.99)), unit: "ms", target: null });
  } finally {
    await app?.close();
    await runner.stop();
    await store.close();
    await pool.end();
    await dropDatabase(database);
  }
  return results;
}
