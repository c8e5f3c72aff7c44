import { Kysely, PostgresDialect } from "kysely";
import { v7 as uuidv7 } from "uuid";
import { PostgresEventStore } from "../adapters/eventstore/postgres/store.ts";
import type { NewEvent } from "../adapters/eventstore/port.ts";
import { createPool } from "../adapters/postgres/connection.ts";
import { tenantStreamId } from "../domain/sentral/stream.ts";
import { ensureProjectionSchemas, rebuildProjection, tenancyProjection } from "../projections/index.ts";
import { dropDatabase, freshDatabase, log, timed, type BenchResult } from "./support.ts";

const actor = { kind: "user", id: "bench-admin" } as const;

/** One tenant's life as the platform would record it: ~102 events, every type the read model handles. */
function tenantHistory(index: number): { streamId: string; events: NewEvent[] } {
  const tenantId = uuidv7();
  const at = (n: number) => new Date(Date.UTC(2026, 0, 1) + index * 1_000 + n);
  const events: NewEvent[] = [];
  const push = (type: string, data: object, projectId?: string) =>
    events.push({ type, data: { tenantId, ...data }, actor, scope: projectId ? { tenantId, projectId } : { tenantId }, occurredAt: at(events.length) });
  push("TenantCreated", { name: `tenant-${index}`, displayName: `Tenant ${index}` });
  push("TenantQuotaSet", { limits: { vcpus: 512, memoryMiB: 1_048_576, vms: 200, hosts: 20, networks: 50, buckets: 100 } });
  for (let p = 0; p < 10; p++) {
    const projectId = uuidv7();
    push("ProjectCreated", { projectId, name: `project-${p}`, description: "benchmark project" }, projectId);
    push("ProjectQuotaSet", { projectId, limits: { vcpus: 32, memoryMiB: 65_536, vms: 10 } }, projectId);
    const environments = Array.from({ length: 7 }, () => uuidv7());
    environments.forEach((environmentId, e) => push("EnvironmentCreated", { projectId, environmentId, name: `env-${e}` }, projectId));
    push("EnvironmentArchived", { projectId, environmentId: environments[6] }, projectId);
  }
  return { streamId: tenantStreamId(tenantId), events };
}

/** Fills a log with ≥ `minEvents` tenancy events, then measures a full readAll scan and a rebuild of the tenancy read model. */
export async function logBenchmarks(options: { minEvents: number }): Promise<BenchResult[]> {
  const database = "dv_bench_log";
  const url = await freshDatabase(database);
  const pool = createPool(url, { max: 12 });
  const store = new PostgresEventStore({ pool });
  const db = new Kysely<any>({ dialect: new PostgresDialect({ pool }) });
  const results: BenchResult[] = [];
  try {
    const tenants = Math.ceil(options.minEvents / 102);
    log(`filling the log: ${tenants} tenants, ~${tenants * 102} events`);
    let next = 0;
    await Promise.all(Array.from({ length: 8 }, async () => {
      for (let i = next++; i < tenants; i = next++) {
        const { streamId, events } = tenantHistory(i);
        await store.append(streamId, events, { expectedVersion: "no_stream" });
      }
    }));
    const total = Number((await pool.query("select count(*) from eventstore.events")).rows[0].count);

    log(`readAll: full scan of ${total} events`);
    const { result: scanned, seconds: scanSeconds } = await timed(async () => {
      let count = 0;
      for (let batch = await store.readAll({ limit: 5_000 }); batch.length > 0; batch = await store.readAll({ after: batch.at(-1)!, limit: 5_000 })) {
        count += batch.length;
      }
      return count;
    });
    results.push({ name: `readAll full scan (${scanned.toLocaleString("en")} events)`, value: Math.round(scanned / scanSeconds), unit: "events/s", target: 150_000, better: "higher" });

    log("rebuild: tenancy read model from the whole log");
    await ensureProjectionSchemas(db, [tenancyProjection]);
    const rebuilt = await rebuildProjection({ db, store, projection: tenancyProjection, swap: true, verify: false, batchSize: 2_000 });
    results.push({ name: `rebuild tenancy projections (${rebuilt.eventsApplied.toLocaleString("en")} events)`, value: Math.round(rebuilt.eventsPerSecond), unit: "events/s", target: 20_000, better: "higher" });
  } finally {
    await store.close();
    await db.destroy();
    await dropDatabase(database);
  }
  return results;
}
