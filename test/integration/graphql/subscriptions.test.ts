import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { projectGlobalId, tenantGlobalId } from "../../../api/graphql/ids.ts";
import { tenantStreamId } from "../../../domain/sentral/stream.ts";
import { actorHeader } from "../api/support/test-auth.ts";
import { Collected } from "./support/collect.ts";
import { actors, createGraphqlHarness, type GraphqlHarness } from "./support/harness.ts";
import { CREATE_ENVIRONMENT, CREATE_PROJECT, must, seedTenancy, SET_PROJECT_QUOTA, type Fixture } from "./support/seed.ts";

let h: GraphqlHarness;
let f: Fixture;
const root = actors.platformAdmin();

beforeAll(async () => {
  h = await createGraphqlHarness();
  f = await seedTenancy(h, "s");
});

afterAll(async () => {
  await h?.dispose();
});

const RESOURCE_CHANGED = `subscription($t: String!, $p: String, $after: String) {
  resourceChanged(tenantId: $t, projectId: $p, afterPosition: $after) { kind id tenantId projectId environmentId eventType eventId position occurredAt }
}`;

const EVENTS = `subscription($s: String, $after: String) {
  events(streamId: $s, afterPosition: $after) {
    id type schemaVersion streamId streamPosition position occurredAt correlationId causationId
    actor { kind id } scope { tenantId projectId environmentId } datacenter data
  }
}`;

const RENAME = `mutation($input: RenameTenantInput!) { renameTenant(input: $input) { __typename ... on TenantPayload { position } } }`;

let probes = 0;

async function until(condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/**
 * graphql-transport-ws has no "subscribed" acknowledgement: write probes (one
 * project each in `tenantId`) until one arrives, so the subscription is known
 * to be live before the writes a test is about. Returns how many items the
 * probes account for.
 */
async function live(sub: Collected<any>, tenantId: string, pick: (item: any) => string | null): Promise<number> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const probe = `s-probe-${++probes}`;
    await must(h, CREATE_PROJECT, { tenantId, projectId: probe, name: probe });
    try {
      await sub.until((items) => items.some((item) => pick(item) === probe), 1_000);
      return sub.items.length;
    } catch (error) {
      if (sub.error !== undefined) throw error;
    }
  }
  throw new Error("the subscription never went live");
}

describe("subscriptions over graphql-transport-ws", () => {
  it("resourceChanged opened before the writes receives each change, in order, with positions to resume from", async () => {
    const client = await h.ws(actors.tenantAdmin(f.a));
    const sub = Collected.start(client, RESOURCE_CHANGED, { t: f.a }, (data) => data.resourceChanged);
    const skip = await live(sub, f.a, (item) => item.projectId);

    const writes = [
      await must(h, CREATE_PROJECT, { tenantId: f.a, projectId: "s-px", name: "px" }),
      await must(h, CREATE_ENVIRONMENT, { tenantId: f.a, projectId: "s-px", environmentId: "s-ex", name: "ex" }),
      await must(h, SET_PROJECT_QUOTA, { tenantId: f.a, projectId: "s-px", limits: { vcpus: 3 } }),
      await must(h, CREATE_PROJECT, { tenantId: f.b, projectId: "s-elsewhere", name: "elsewhere" }),
      await must(h, RENAME, { tenantId: f.a, name: "s-renamed" }),
    ];
    const items = await sub.until((all) => all.length >= skip + 4);
    const changes = items.slice(skip);
    expect(changes.map((c) => [c.kind, c.eventType, c.projectId, c.environmentId])).toEqual([
      ["PROJECT", "ProjectCreated", "s-px", null],
      ["ENVIRONMENT", "EnvironmentCreated", "s-px", "s-ex"],
      ["PROJECT", "ProjectQuotaSet", "s-px", null],
      ["TENANT", "TenantRenamed", null, null],
    ]);
    // Each change carries the position its mutation answered; tenant B's write is not among them.
    expect(changes.map((c) => c.position)).toEqual([writes[0], writes[1], writes[2], writes[4]].map((w) => w.position));
    expect(changes[0].id).toBe(projectGlobalId(f.a, "s-px"));
    expect(changes[3].id).toBe(tenantGlobalId(f.a));
    expect(changes.every((c) => c.tenantId === f.a)).toBe(true);

    // The global id reads the changed resource back.
    const node = await h.gql(actors.tenantAdmin(f.a), `query($id: ID!) { node(id: $id) { ... on Project { name } } }`, { id: changes[0].id });
    expect(node.body.data.node).toEqual({ name: "px" });

    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(sub.items).toHaveLength(skip + 4);
    sub.stop();
  });

  it("resuming from the last position received misses nothing and repeats nothing, while writes go on", async () => {
    const stream = tenantStreamId(f.a);
    const auditor = actors.auditor(f.a);
    const first = await h.ws(auditor);
    const sub1 = Collected.start(first, EVENTS, { s: stream, after: "0.0" }, (data) => data.events);
    const existing = (await h.db.store.readStream(stream)).length;
    await sub1.until((items) => items.length >= existing);

    // Writes keep coming while the first connection goes away and the second catches up.
    const writer = (async () => {
      const positions: string[] = [];
      for (let i = 0; i < 12; i++) {
        const result = await must(h, CREATE_PROJECT, { tenantId: f.a, projectId: `s-w${i}`, name: `w${i}` });
        positions.push(result.position);
      }
      return positions;
    })();
    await sub1.until((items) => items.length >= existing + 3);
    await first.dispose();
    const received1 = [...sub1.items];
    const resumeAfter = received1.at(-1).position;

    const second = await h.ws(auditor);
    const sub2 = Collected.start(second, EVENTS, { s: stream, after: resumeAfter }, (data) => data.events);
    const positions = await writer;
    const last = positions.at(-1);
    await sub2.until((items) => items.some((item) => item.position === last));
    sub2.stop();

    const all = [...received1, ...sub2.items];
    const stored = await h.db.store.readStream(stream);
    expect(all.map((e) => e.streamPosition)).toEqual(stored.map((e) => e.streamPosition));
    expect(all.map((e) => e.id)).toEqual(stored.map((e) => e.id));
    expect(new Set(all.map((e) => e.id)).size).toBe(all.length);
    // The envelope comes through whole.
    const created = all.find((e) => e.data?.projectId === "s-w0");
    expect(created).toMatchObject({
      type: "ProjectCreated",
      schemaVersion: 1,
      streamId: stream,
      actor: { kind: "user", id: root.id },
      scope: { tenantId: f.a, projectId: "s-w0", environmentId: null },
      data: { tenantId: f.a, projectId: "s-w0", name: "w0" },
    });
  });

  it("another tenant's admin receives nothing of tenant A, and A's streams do not exist for it", async () => {
    const adminB = actors.tenantAdmin(f.b);
    const client = await h.ws(adminB);
    const everything = Collected.start(client, EVENTS, {}, (data) => data.events);
    const skip = await live(everything, f.b, (item) => item.data?.projectId ?? null);
    await must(h, CREATE_PROJECT, { tenantId: f.a, projectId: "s-secret", name: "secret" });
    await must(h, RENAME, { tenantId: f.a, name: "s-secret-name" });
    const sentinel = await must(h, CREATE_PROJECT, { tenantId: f.b, projectId: "s-b-after", name: "after" });
    const items = await everything.until((all) => all.some((e) => e.position === sentinel.position));
    expect(items.slice(skip).map((e) => [e.scope.tenantId, e.type])).toEqual([[f.b, "ProjectCreated"]]);
    expect(JSON.stringify(items)).not.toContain(f.a);
    everything.stop();

    // Subscribing to A's things fails exactly as for things that do not exist.
    const failure = async (query: string, variables: Record<string, unknown>) =>
      JSON.stringify(await Collected.start(client, query, variables).failure());
    const hiddenStream = await failure(EVENTS, { s: tenantStreamId(f.a) });
    const noStream = await failure(EVENTS, { s: tenantStreamId("s-none") });
    expect(hiddenStream).toContain("NOT_FOUND");
    expect(hiddenStream.replaceAll(f.a, "X")).toBe(noStream.replaceAll("s-none", "X"));
    const hiddenTenant = await failure(RESOURCE_CHANGED, { t: f.a });
    const noTenant = await failure(RESOURCE_CHANGED, { t: "s-none" });
    expect(hiddenTenant).toContain("NOT_FOUND");
    expect(hiddenTenant.replaceAll(f.a, "X")).toBe(noTenant.replaceAll("s-none", "X"));
  });

  it("a project member follows its project and the tenant, not sibling projects, and reads no raw history", async () => {
    const member = actors.member(f.a, f.p2);
    const client = await h.ws(member);
    const sub = Collected.start(client, RESOURCE_CHANGED, { t: f.a }, (data) => data.resourceChanged);
    // Probes are new projects the member cannot see, so go live on a write to its own project instead.
    let skip = -1;
    for (let i = 0; i < 20 && skip < 0; i++) {
      const w = await must(h, SET_PROJECT_QUOTA, { tenantId: f.a, projectId: f.p2, limits: { vcpus: 30 + i } });
      try {
        await sub.until((items) => items.some((item) => item.position === w.position), 1_000);
        skip = sub.items.length;
      } catch {
        // not live yet
      }
    }
    expect(skip).toBeGreaterThan(0);
    await must(h, SET_PROJECT_QUOTA, { tenantId: f.a, projectId: f.p1, limits: { vcpus: 5 } });
    await must(h, CREATE_ENVIRONMENT, { tenantId: f.a, projectId: f.p2, environmentId: "s-e-p2", name: "p2env" });
    const renamed = await must(h, RENAME, { tenantId: f.a, name: "s-member-sees" });
    const items = await sub.until((all) => all.some((item) => item.position === renamed.position));
    expect(items.slice(skip).map((c) => [c.eventType, c.projectId])).toEqual([
      ["EnvironmentCreated", f.p2],
      ["TenantRenamed", null],
    ]);
    sub.stop();

    const history = await Collected.start(client, EVENTS, { s: tenantStreamId(f.a) }).failure();
    expect(JSON.stringify(history)).toContain("NOT_FOUND");
    const all = await Collected.start(client, EVENTS, {}).failure();
    expect(JSON.stringify(all)).toContain("FORBIDDEN");
  });

  it("a subscription stops tailing the log when the client unsubscribes or goes away", async () => {
    const client = await h.ws(root);
    const before = h.openSubscriptions();
    const one = Collected.start(client, RESOURCE_CHANGED, { t: f.a }, (data) => data.resourceChanged);
    const two = Collected.start(client, EVENTS, {}, (data) => data.events);
    await live(one, f.a, (item) => item.projectId);
    await live(two, f.a, (item) => item.data?.projectId ?? null);
    expect(h.openSubscriptions()).toBe(before + 2);
    one.stop();
    await until(() => h.openSubscriptions() === before + 1);
    await client.dispose();
    await until(() => h.openSubscriptions() === before);
  });

  it("an actor authenticated on the upgrade request needs no token in connection_init", async () => {
    const client = await h.ws(null, { connectionParams: {}, upgradeHeaders: actorHeader(actors.auditor()) });
    const sub = Collected.start(client, EVENTS, {}, (data) => data.events);
    await live(sub, f.b, (item) => item.data?.projectId ?? null);
    sub.stop();
  });

  it("refuses a bad token, an anonymous subscriber, a bad position and an invalid document", async () => {
    const badToken = await h.ws(null, { connectionParams: { authorization: "Bearer not-a-token" } });
    const refused = await Collected.start(badToken, RESOURCE_CHANGED, { t: f.a }).failure();
    expect(refused).toBeDefined();

    const anonymous = await h.ws(null);
    expect(JSON.stringify(await Collected.start(anonymous, RESOURCE_CHANGED, { t: f.a }).failure())).toContain("UNAUTHENTICATED");

    const client = await h.ws(root);
    expect(JSON.stringify(await Collected.start(client, EVENTS, { after: "yesterday" }).failure())).toContain("BAD_USER_INPUT");
    const invalid = JSON.stringify(await Collected.start(client, `subscription { events { nope } }`).failure());
    expect(invalid).toContain("Cannot query field");
    expect(invalid).toContain("GRAPHQL_VALIDATION_FAILED");
  });
});
