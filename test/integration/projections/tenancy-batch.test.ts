import fc from "fast-check";
import { sql } from "kysely";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RecordedEvent } from "../../../adapters/eventstore/port.ts";
import { tenantStreamId } from "../../../domain/sentral/stream.ts";
import { applyEvents } from "../../../projections/checkpoints.ts";
import { projectionChecksum } from "../../../projections/checksum.ts";
import type { AnyProjection } from "../../../projections/projection.ts";
import { tenancyProjection } from "../../../projections/sentral/tenancy.ts";
import { createProjectionTables } from "../../../projections/setup.ts";
import { createHarness, type ProjectionHarness } from "./support.ts";

/**
 * The tenancy projection's batch path (handleBatch) against its per-event
 * path (handle), the reference: random tenancy histories, mostly valid but
 * with duplicates, unknown rows, bad data and foreign events mixed in, cut
 * into random batches. Both sides get the same batches, each in its own
 * transaction (as the runner applies them); every batch must succeed or fail
 * on both sides, and afterwards the models must be equal row for row and by
 * checksum.
 */

let h: ProjectionHarness;
beforeAll(async () => {
  h = await createHarness();
});
afterAll(async () => {
  await h?.dispose();
});

const perEvent: AnyProjection = { ...tenancyProjection, handleBatch: undefined };
const batched: AnyProjection = tenancyProjection;
const SINGLE = "tenancy_single";
const BATCH = "tenancy_batch";

const KEYS: Record<string, string> = {
  tenants: "tenant_id",
  projects: "tenant_id, project_id",
  environments: "tenant_id, project_id, environment_id",
  quotas: "tenant_id, scope_kind, scope_id",
};

async function rows(schema: string): Promise<Record<string, unknown[]>> {
  const result: Record<string, unknown[]> = {};
  for (const table of tenancyProjection.tables) {
    const { rows } = await sql`select * from ${sql.table(`${schema}.${table}`)} order by ${sql.raw(KEYS[table]!)}`.execute(h.db);
    result[table] = rows;
  }
  return result;
}

async function freshSchemas(): Promise<void> {
  await h.db.transaction().execute(async (trx) => {
    for (const schema of [SINGLE, BATCH]) {
      await sql`drop schema if exists ${sql.id(schema)} cascade`.execute(trx);
      await createProjectionTables(trx, tenancyProjection, schema);
    }
  });
}

async function apply(projection: AnyProjection, schema: string, events: readonly RecordedEvent[]): Promise<string> {
  try {
    await h.db.transaction().execute((trx) => applyEvents(trx, projection, schema, events));
    return "ok";
  } catch {
    // Only the outcome is compared: the batch path words some failures differently.
    return "failed";
  }
}

// --- histories ---------------------------------------------------------------------------------

// Array-literal and JSON metacharacters, padding that zod trims, and a lone surrogate (UTF-8 makes it U+FFFD).
const texts = ["Acme AS", "  padded  ", "Ünïcødé ✓", `a'b"c\\d`, "NULL", "{x,y}", "(1,2)", "tab\there", "lone \ud800 half", "x".repeat(200)];
const names = ["web", "api", "db-1", "x", "a-very-long-name-0123456789"];

const limitValue = fc.oneof(fc.constant(null), fc.constant(0), fc.nat(1_000), fc.maxSafeNat());
const limitsArb = fc.record(
  { vcpus: limitValue, memoryMiB: limitValue, vms: limitValue, hosts: limitValue, networks: limitValue, buckets: limitValue },
  { requiredKeys: [] },
);

const stepArb = fc.record({
  kind: fc.nat(199),
  invalid: fc.nat(39), // 0: aim at a row that is not there (or already is)
  a: fc.nat(),
  b: fc.nat(),
  text: fc.option(fc.constantFrom(...texts), { nil: null }),
  name: fc.constantFrom(...names),
  limits: limitsArb,
  ms: fc.constantFrom(0, 1, 1_000, 60_000),
  era: fc.nat(59), // 0 and 1: a year JSON's ISO form would not carry (10000+, BC)
});
type Step = typeof stepArb extends fc.Arbitrary<infer T> ? T : never;

interface Model {
  tenants: string[];
  projects: Map<string, string[]>;
  environments: Map<string, string[]>;
}

/** Turns random steps into a log: a model of what should exist steers most events at existing rows. */
function history(steps: readonly Step[]): RecordedEvent[] {
  const model: Model = { tenants: [], projects: new Map(), environments: new Map() };
  const positions = new Map<string, number>();
  const events: RecordedEvent[] = [];
  let time = Date.UTC(2026, 3, 1);
  const pick = <T>(list: readonly T[], n: number): T | undefined => (list.length ? list[n % list.length] : undefined);

  for (const step of steps) {
    time += step.ms;
    const k = step.kind;
    const invalid = step.invalid === 0;
    let type =
      k < 20 ? "TenantCreated"
      : k < 32 ? "TenantRenamed"
      : k < 42 ? "TenantSuspended"
      : k < 52 ? "TenantResumed"
      : k < 80 ? "ProjectCreated"
      : k < 90 ? "ProjectArchived"
      : k < 124 ? "EnvironmentCreated"
      : k < 138 ? "EnvironmentArchived"
      : k < 160 ? "TenantQuotaSet"
      : k < 190 ? "ProjectQuotaSet"
      : k < 197 ? "Ticked"
      : k < 198 ? "BadData"
      : "BadVersion";
    // A valid event needs its parent: create that first.
    if (!invalid && model.tenants.length === 0 && type !== "Ticked") type = "TenantCreated";
    let tenantId = invalid || model.tenants.length === 0 ? `t${step.a % 5}` : pick(model.tenants, step.a)!;
    if (!invalid && (type === "ProjectArchived" || type.startsWith("Environment")) && !model.projects.get(tenantId)?.length) {
      type = "ProjectCreated";
    }
    if (!invalid && type === "EnvironmentArchived") {
      const projectId = pick(model.projects.get(tenantId)!, step.b)!;
      if (!model.environments.get(`${tenantId}/${projectId}`)?.length) type = "EnvironmentCreated";
    }
    let data: Record<string, unknown> = {};
    let eventType = type;
    let schemaVersion = 1;
    const projects = model.projects.get(tenantId) ?? [];
    switch (type) {
      case "TenantCreated":
        tenantId = invalid ? (pick(model.tenants, step.a) ?? "t0") : `t${model.tenants.length}`;
        // Two ids that differ only in a lone surrogate are one id in Postgres.
        if (step.a % 13 === 0) tenantId = step.b % 2 ? "u\ud800" : "u\udbff";
        if (!invalid) model.tenants.push(tenantId);
        data = { name: step.name, displayName: step.text };
        break;
      case "TenantRenamed":
        data = { name: step.name, displayName: step.text };
        break;
      case "TenantSuspended":
        data = { reason: step.text ?? "unpaid" };
        break;
      case "ProjectCreated": {
        const projectId = invalid ? (pick(projects, step.b) ?? "p0") : `p${projects.length}`;
        if (!invalid) model.projects.set(tenantId, [...projects, projectId]);
        data = { projectId, name: step.name, description: step.text };
        break;
      }
      case "ProjectArchived":
        data = { projectId: invalid ? `p${(step.b % 3) + 7}` : (pick(projects, step.b) ?? "p0") };
        break;
      case "EnvironmentCreated":
      case "EnvironmentArchived": {
        const projectId = pick(projects, step.b) ?? "p0";
        const key = `${tenantId}/${projectId}`;
        const environments = model.environments.get(key) ?? [];
        let environmentId: string;
        if (type === "EnvironmentCreated") {
          environmentId = invalid ? (pick(environments, step.a) ?? "e0") : `e${environments.length}`;
          if (!invalid) model.environments.set(key, [...environments, environmentId]);
          data = { projectId, environmentId, name: step.name };
        } else {
          environmentId = invalid ? `e${(step.a % 3) + 7}` : (pick(environments, step.a) ?? "e0");
          data = { projectId, environmentId };
        }
        break;
      }
      case "TenantQuotaSet":
        data = { limits: step.limits };
        break;
      case "ProjectQuotaSet":
        data = { projectId: pick(projects, step.b) ?? `p${step.b % 3}`, limits: step.limits };
        break;
      case "Ticked":
        data = { n: step.a };
        break;
      case "BadData":
        eventType = "TenantRenamed";
        data = { name: "Not A DNS Label", displayName: null };
        break;
      case "BadVersion":
        eventType = "TenantResumed";
        schemaVersion = 2;
        break;
    }
    const streamId = tenantStreamId(tenantId);
    const streamPosition = positions.get(streamId) ?? 0;
    positions.set(streamId, streamPosition + 1);
    const n = events.length + 1;
    events.push({
      id: `00000000-0000-7000-8000-${String(n).padStart(12, "0")}`,
      type: eventType,
      schemaVersion,
      streamId,
      streamPosition,
      globalPosition: BigInt(n),
      transactionId: BigInt(1000 + n),
      occurredAt: new Date(step.era === 0 ? time + 10_000 * 365 * 86_400_000 : step.era === 1 ? Date.UTC(-3, 5, 1, 12, 0, 0, 5) : time),
      data: { tenantId, ...data },
      correlationId: "c",
      causationId: null,
      actor: { kind: "user", id: "prop" },
      scope: { tenantId },
      datacenter: null,
      hash: "",
    });
  }
  return events;
}

function chunks<T>(items: readonly T[], sizes: readonly number[]): T[][] {
  const result: T[][] = [];
  for (let i = 0, s = 0; i < items.length; s++) {
    const size = sizes.length ? sizes[s % sizes.length]! : items.length;
    result.push(items.slice(i, i + size));
    i += size;
  }
  return result;
}

describe("tenancy projection: batch path", () => {
  it("leaves exactly the model the per-event path leaves, batch by batch, for random histories", async () => {
    const stats = { runs: 0, batches: 0, failedBatches: 0, maxRows: 0 };
    await fc.assert(
      fc.asyncProperty(
        fc.array(stepArb, { minLength: 1, maxLength: 120, size: "max" }),
        fc.array(fc.integer({ min: 1, max: 30 }), { maxLength: 6, size: "max" }),
        async (steps, sizes) => {
          const events = history(steps);
          await freshSchemas();
          const outcomes: Array<[string, string]> = [];
          for (const batch of chunks(events, sizes)) {
            outcomes.push([await apply(perEvent, SINGLE, batch), await apply(batched, BATCH, batch)]);
          }
          for (const [single, batch] of outcomes) expect(batch).toBe(single);
          const single = await rows(SINGLE);
          expect(await rows(BATCH)).toEqual(single);
          const [a, b] = await Promise.all([
            projectionChecksum(h.db, tenancyProjection, { schema: SINGLE }),
            projectionChecksum(h.db, tenancyProjection, { schema: BATCH }),
          ]);
          expect(b.digest).toBe(a.digest);

          stats.runs += 1;
          stats.batches += outcomes.length;
          stats.failedBatches += outcomes.filter(([o]) => o !== "ok").length;
          stats.maxRows = Math.max(stats.maxRows, Object.values(single).reduce((n, r) => n + r.length, 0));
        },
      ),
      { numRuns: 60 },
    );
    // The generator must exercise both outcomes and build models of some size.
    expect(stats.failedBatches).toBeGreaterThan(0);
    expect(stats.failedBatches).toBeLessThan(stats.batches);
    expect(stats.maxRows).toBeGreaterThan(20);
  }, 180_000);

  it("one batch of a whole valid history equals the per-event path", async () => {
    const steps = fc.sample(fc.array(stepArb, { minLength: 300, maxLength: 300 }), { numRuns: 1, seed: 42 })[0]!;
    const events = history(steps.map((step) => ({ ...step, invalid: 1, kind: step.kind % 190, a: step.a * 13 + 1 }))) // no colliding ids;
    await freshSchemas();
    expect(await apply(perEvent, SINGLE, events)).toBe("ok");
    expect(events.length).toBe(300);
    expect(await apply(batched, BATCH, events)).toBe("ok");
    const single = await rows(SINGLE);
    expect(single.projects!.length).toBeGreaterThan(10);
    expect(await rows(BATCH)).toEqual(single);
  });
});
