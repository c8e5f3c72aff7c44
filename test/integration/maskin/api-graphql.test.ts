import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { executeHostCommand } from "../../../commands/maskin/index.ts";
import { PLATFORM_TENANT } from "../../../domain/shared/envelope.ts";
import { actorHeader } from "../api/support/test-auth.ts";
import { Collected } from "../graphql/support/collect.ts";
import { actors, createGraphqlHarness, type GraphqlHarness } from "../graphql/support/harness.ts";

/**
 * GraphQL hosts: inventory joined with the maskin.hosts read model — power as
 * observed (two agreeing reads, recorded by the observer) against desired,
 * drift, lifecycle — and hostChanged delivering a host's changes live.
 */
describe("GraphQL hosts, datacenters, racks and hostChanged", () => {
  let h: GraphqlHarness;
  const admin = actors.platformAdmin();
  const ids: Record<string, string> = {};
  const ctx = { actor: { kind: "service", id: "observer" } as const, correlationId: "observer", scope: { tenantId: PLATFORM_TENANT }, datacenter: "osl1" };

  beforeAll(async () => {
    h = await createGraphqlHarness({ writeWaitMs: 20_000 });
    const imported = await h.app.inject({
      method: "POST",
      url: "/v1/inventory/import",
      headers: actorHeader(admin),
      payload: {
        document: {
          datacenters: [
            { name: "osl1", racks: [{ name: "r01", hosts: [{ name: "node-01", serial: "SN1", macs: ["52:54:00:12:34:01"] }] }, { name: "r02", hosts: [{ name: "node-02", serial: "SN2", macs: ["52:54:00:12:34:02"] }] }] },
            { name: "bgo1", racks: [{ name: "r01", hosts: [{ name: "node-03", serial: "SN3", macs: ["52:54:00:12:34:03"] }] }] },
          ],
        },
      },
    });
    expect(imported.statusCode, imported.body).toBe(200);
    const list = await h.app.inject({ method: "GET", url: "/v1/hosts", headers: actorHeader(admin) });
    for (const host of JSON.parse(list.body).items as Array<{ id: string; name: string }>) ids[host.name] = host.id;
  });
  afterAll(async () => {
    await h?.dispose();
  });

  it("shows desired and observed power and the drift between them; lifecycle from the host's stream", async () => {
    const hostId = ids["node-01"]!;
    await executeHostCommand(h.db.store, { type: "SetDesiredPower", hostId, state: "on", taskId: "t-power", at: new Date().toISOString() }, ctx);
    const observed = await executeHostCommand(
      h.db.store,
      { type: "RecordPowerObservation", hostId, state: "off", observedAt: "2026-12-01T10:00:02.000Z", firstSeenAt: "2026-12-01T10:00:00.000Z", previousState: null },
      ctx,
    );
    await h.runner.waitForPosition("maskin", observed.position!, 20_000);
    const one = await h.gql(admin, `query($id: String!) { host(id: $id) { hostId name datacenter rack state power { desired observed observedAt drift driftSince } } }`, { id: hostId });
    expect(one.body.errors).toBeUndefined();
    expect(one.body.data.host).toMatchObject({
      hostId,
      name: "node-01",
      datacenter: "osl1",
      rack: "r01",
      state: "available",
      power: { desired: "ON", observed: "OFF", observedAt: "2026-12-01T10:00:02.000Z", drift: true },
    });
    expect(one.body.data.host.power.driftSince).not.toBeNull();

    const lists = await h.gql(admin, `{
      hosts(datacenter: "osl1") { nodes { name power { drift } } }
      datacenters { name racks { name hosts { name } } }
      racks(datacenter: "osl1") { name hosts { name power { observed drift } } }
    }`);
    expect(lists.body.errors).toBeUndefined();
    expect(lists.body.data.hosts.nodes.map((n: { name: string; power: { drift: boolean } }) => [n.name, n.power.drift]).sort()).toEqual([["node-01", true], ["node-02", false]]);
    expect(lists.body.data.datacenters).toEqual([
      { name: "bgo1", racks: [{ name: "r01", hosts: [{ name: "node-03" }] }] },
      { name: "osl1", racks: [{ name: "r01", hosts: [{ name: "node-01" }] }, { name: "r02", hosts: [{ name: "node-02" }] }] },
    ]);
    expect(lists.body.data.racks).toEqual([
      { name: "r01", hosts: [{ name: "node-01", power: { observed: "OFF", drift: true } }] },
      { name: "r02", hosts: [{ name: "node-02", power: { observed: null, drift: false } }] },
    ]);

    // A tenant's admin sees no host at all.
    const owner = await h.gql(actors.tenantAdmin("t-a"), `query($id: String!) { host(id: $id) { hostId } hosts { nodes { hostId } } datacenters { name } }`, { id: hostId });
    expect(owner.body.data).toEqual({ host: null, hosts: { nodes: [] }, datacenters: [] });
  });

  it("hostChanged delivers the host's changes of the datacenter asked for, with the host as it is now", async () => {
    const client = await h.ws(admin);
    try {
      const sub = Collected.start<any>(client, `subscription { hostChanged(datacenter: "osl1") { hostId datacenter eventType position host { name power { observed } } } }`, {}, (data) => data.hostChanged);
      // No "subscribed" acknowledgement in graphql-transport-ws: repeat a change until one arrives.
      let flips = 0;
      const flip = () =>
        executeHostCommand(h.db.store, { type: "SetDesiredPower", hostId: ids["node-02"]!, state: ++flips % 2 ? "on" : "off", taskId: `t-${flips}`, at: new Date().toISOString() }, ctx);
      for (let i = 0; i < 20 && sub.items.length === 0; i++) {
        await flip();
        await sub.until((items) => items.length > 0, 1_000).catch(() => undefined);
      }
      // Another datacenter's host: not delivered; then node-01 goes on.
      await executeHostCommand(h.db.store, { type: "SetDesiredPower", hostId: ids["node-03"]!, state: "on", taskId: "t-bgo", at: new Date().toISOString() }, { ...ctx, datacenter: "bgo1" });
      const on = await executeHostCommand(
        h.db.store,
        { type: "RecordPowerObservation", hostId: ids["node-01"]!, state: "on", observedAt: "2026-12-01T11:00:02.000Z", firstSeenAt: "2026-12-01T11:00:00.000Z", previousState: "off" },
        ctx,
      );
      const last = `${on.position!.transactionId}.${on.position!.globalPosition}`;
      const items = await sub.until((received) => received.some((item) => item.position === last));
      expect(items.every((item) => item.datacenter === "osl1")).toBe(true);
      expect(items.some((item) => item.hostId === ids["node-03"])).toBe(false);
      expect(items.at(-1)).toMatchObject({ hostId: ids["node-01"], eventType: "HostPowerStateObserved", host: { name: "node-01" } });
      sub.stop();
    } finally {
      await client.dispose();
    }
  });
});
