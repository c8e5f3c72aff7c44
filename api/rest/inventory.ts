import type { FastifyRequest } from "fastify";
import type { FastifyPluginAsyncZod } from "fastify-type-provider-zod";
import { z } from "zod";
import { formatPosition } from "../../adapters/eventstore/position.ts";
import type { SecretWriter } from "../../adapters/secrets/port.ts";
import { approveHostIdentityChange, importInventory, InventoryImportError } from "../../commands/inventory/index.ts";
import type { CommandStore } from "../../commands/pipeline.ts";
import { PLATFORM_TENANT } from "../../domain/shared/envelope.ts";
import type { DatacenterRow, HostRow, LinkRow, RackRow, SwitchRow } from "../../projections/sentral/inventory.ts";
import { isPlatformAdmin } from "../auth/policy.ts";
import { actorOf } from "../http/access.ts";
import { etagFor, sendIfNotModified } from "../http/etag.ts";
import { decodeCursor, PageQuerySchema, pageSchema, toPage } from "../http/pagination.ts";
import { MinPositionQuerySchema, type ReadYourWrites } from "../http/read-your-writes.ts";
import type { ApiMetrics } from "../observability/metrics.ts";
import { ApiProblem } from "../problem.ts";
import { canReadInventory, type InventoryReadModel } from "../read/inventory.ts";
import { inventoryJsonSchema, validateInventoryDocument } from "../schemas/inventory.ts";
import { idempotencyHeader } from "./headers.ts";
import { apiSchemas } from "./schemas.ts";

/**
 * Inventory: the platform's datacenters and hardware. Platform-admins import
 * and approve; platform-admins and platform auditors read. Anyone else cannot
 * see any of it: a single datacenter or host answers 404 exactly like a
 * missing one, and the collections and the import answer 403 (their
 * existence is public in the OpenAPI document, their contents are not).
 * BMC endpoints are shown without any secret: `hasCredential` says whether a
 * password is stored; the password itself is only ever revealed to workers.
 */
export interface InventoryRouteDeps {
  readonly store: CommandStore;
  readonly read: InventoryReadModel;
  /** Read-your-writes on the inventory projection. */
  readonly ryw: ReadYourWrites;
  readonly metrics: ApiMetrics;
  /** Where imported passwords go; null: the server has no secret key and refuses documents with passwords. */
  readonly secrets: SecretWriter | null;
}

const TAGS = ["inventory"];
const Timestamp = z.string().meta({ format: "date-time" });
const iso = (value: Date | string) => (value instanceof Date ? value : new Date(value)).toISOString();

const IdentitySchema = z.object({ serial: z.string(), macs: z.array(z.string()), bmcAddress: z.string().nullable() });

export const HostSchema = z.object({
  id: z.string(),
  datacenter: z.string(),
  name: z.string(),
  rack: z.string(),
  position: z.number().int().nullable(),
  serial: z.string(),
  vendor: z.string().nullable(),
  model: z.string().nullable(),
  macs: z.array(z.string()).describe("Lowercase, colon-separated; the first is the boot NIC"),
  role: z.enum(["bare-metal", "hypervisor"]),
  bmc: z
    .object({
      driver: z.enum(["ipmi", "redfish"]),
      address: z.string().nullable(),
      port: z.number().int(),
      username: z.string(),
      hasCredential: z.boolean().describe("A password is stored (encrypted); it is never shown"),
    })
    .nullable(),
  pendingIdentityChange: z
    .object({ changeId: z.string(), proposed: IdentitySchema, proposedAt: Timestamp })
    .nullable()
    .describe("A new serial/MACs/BMC address waiting for approval (POST .../approve-identity); not in effect until then"),
  createdAt: Timestamp,
  updatedAt: Timestamp,
  version: z.number().int().describe("Datacenter stream position of the host's last change"),
});
apiSchemas.add(HostSchema, { id: "Host" });

const DatacenterSummarySchema = z.object({
  name: z.string(),
  displayName: z.string().nullable(),
  region: z.string().nullable(),
  createdAt: Timestamp,
  updatedAt: Timestamp,
  version: z.number().int().describe("The datacenter stream's version (the ETag)"),
});
const DatacenterSchema = DatacenterSummarySchema.extend({
  racks: z.array(z.object({ name: z.string(), room: z.string().nullable(), hosts: z.number().int() })),
  switches: z.array(z.object({
    name: z.string(), rack: z.string().nullable(), position: z.number().int().nullable(), vendor: z.string().nullable(),
    model: z.string().nullable(), managementAddress: z.string().nullable(),
  })),
  links: z.array(z.object({ a: z.object({ device: z.string(), port: z.string() }), b: z.object({ device: z.string(), port: z.string() }) })),
});
apiSchemas.add(DatacenterSchema, { id: "Datacenter" });

const ReportSchema = z.object({
  dryRun: z.boolean(),
  items: z.array(z.object({
    kind: z.enum(["datacenter", "rack", "host", "switch", "link"]),
    datacenter: z.string(),
    name: z.string(),
    id: z.string().optional(),
    path: z.string().describe("Where in the document"),
    outcome: z.enum(["created", "updated", "unchanged", "pending-approval"]),
    changes: z.array(z.string()),
    pendingChange: z.object({ changeId: z.string(), fields: z.array(z.string()) }).optional(),
  })),
  summary: z.object({ created: z.number().int(), updated: z.number().int(), unchanged: z.number().int(), "pending-approval": z.number().int() }),
  position: z.string().nullable().describe("Log position of the last event written (X-Dv-Position); null when nothing was written"),
});
apiSchemas.add(ReportSchema, { id: "InventoryImportReport" });

const ImportBody = z.strictObject({
  document: z.unknown().describe("The inventory file as JSON; its schema is GET /v1/schemas/inventory.json"),
  dryRun: z.boolean().default(false).describe("Only compute and report the difference; write nothing"),
});
const DatacenterParams = z.object({ datacenter: z.string().min(1).max(63) });
const HostParams = z.object({ hostId: z.string().min(1).max(100) });
const ApproveBody = z.strictObject({ changeId: z.string().min(1).max(100).optional().describe("The change you reviewed (from the host's pendingIdentityChange)") }).nullish();
const HostListQuery = PageQuerySchema.extend({
  datacenter: z.string().min(1).max(63).optional(),
  rack: z.string().min(1).max(63).optional(),
  name: z.string().min(1).max(63).optional(),
  pendingApproval: z.enum(["true", "false"]).optional().describe("Only hosts with (true) or without (false) an identity change waiting"),
}).extend(MinPositionQuerySchema.shape);

export function renderHost(row: HostRow): z.infer<typeof HostSchema> {
  return {
    id: row.host_id,
    datacenter: row.datacenter,
    name: row.name,
    rack: row.rack,
    position: row.position,
    serial: row.serial,
    vendor: row.vendor,
    model: row.model,
    macs: row.macs,
    role: row.role as "bare-metal" | "hypervisor",
    bmc: row.bmc ? { driver: row.bmc.driver, address: row.bmc_address, port: row.bmc.port, username: row.bmc.username, hasCredential: row.bmc.credentialRef !== null } : null,
    pendingIdentityChange: row.pending_identity
      ? { changeId: row.pending_identity.changeId, proposed: row.pending_identity.identity, proposedAt: row.pending_identity.proposedAt }
      : null,
    createdAt: iso(row.created_at),
    updatedAt: iso(row.updated_at),
    version: row.version,
  };
}

function renderDatacenterSummary(row: DatacenterRow) {
  return { name: row.name, displayName: row.display_name, region: row.region, createdAt: iso(row.created_at), updatedAt: iso(row.updated_at), version: row.stream_version };
}

function renderDatacenter(row: DatacenterRow, contents: { racks: Array<RackRow & { hosts: number }>; switches: SwitchRow[]; links: LinkRow[] }) {
  return {
    ...renderDatacenterSummary(row),
    racks: contents.racks.map((r) => ({ name: r.name, room: r.room, hosts: r.hosts })),
    switches: contents.switches.map((s) => ({ name: s.name, rack: s.rack, position: s.position, vendor: s.vendor, model: s.model, managementAddress: s.management_address })),
    links: contents.links.map((l) => ({ a: { device: l.a_device, port: l.a_port }, b: { device: l.b_device, port: l.b_port } })),
  };
}

export const hostNotFound = (hostId: string) => new ApiProblem("host_not_found", `host ${hostId} does not exist`, { details: { hostId } });
const datacenterNotFound = (datacenter: string) => new ApiProblem("datacenter_not_found", `datacenter ${datacenter} does not exist`, { details: { datacenter } });
const notInventoryReader = () => new ApiProblem("forbidden", "your roles do not allow you to see the platform's inventory (it needs platform-admin or a platform auditor)");

export const inventoryRoutes: FastifyPluginAsyncZod<InventoryRouteDeps> = async (app, deps) => {
  /** Collections: 403 for anyone who may not read the inventory. */
  const requireReader = async (request: FastifyRequest) => {
    if (!canReadInventory(actorOf(request))) throw notInventoryReader();
  };

  app.get(
    "/v1/schemas/inventory.json",
    {
      schema: { operationId: "getInventorySchema", summary: "The JSON Schema of inventory files (any authenticated caller)", tags: TAGS, response: { 200: z.record(z.string(), z.unknown()) } },
      config: { access: { level: "authenticated" } },
    },
    async (_request, reply) => {
      reply.header("cache-control", "private, max-age=300");
      return inventoryJsonSchema as unknown as Record<string, unknown>;
    },
  );

  app.post(
    "/v1/inventory/import",
    {
      schema: {
        operationId: "importInventory",
        summary: "Import an inventory file (platform-admin)",
        description:
          "Validates the document against /v1/schemas/inventory.json and the current inventory, reporting every error with its path " +
          "(422 inventory_invalid, nothing written), then applies the difference. The same document again changes nothing. " +
          "Identity changes (serial, MACs, BMC address) of registered hosts wait for approval. Passwords are stored encrypted; " +
          "passwordFile must be resolved by the client.",
        tags: TAGS,
        headers: idempotencyHeader,
        body: ImportBody,
        response: { 200: ReportSchema },
      },
      config: { access: { level: "administer-platform" } },
    },
    async (request, reply) => {
      const checked = validateInventoryDocument(request.body.document);
      if (!checked.ok) throw invalid(checked.errors.map((e) => ({ path: `document${e.path ? `.${e.path}` : ""}`, message: e.message })));
      const actor = actorOf(request);
      let report;
      try {
        report = await importInventory(
          { store: deps.store, secrets: deps.secrets },
          checked.document,
          { dryRun: request.body.dryRun },
          { actor: { kind: actor.kind, id: actor.id }, correlationId: request.id, scope: { tenantId: PLATFORM_TENANT } },
        );
      } catch (error) {
        if (error instanceof InventoryImportError) throw invalid(error.errors.map((e) => ({ path: `document.${e.path}`, message: e.message })));
        throw error;
      }
      request.log.info({ dryRun: report.dryRun, summary: report.summary }, "inventory imported");
      await deps.ryw.afterWrite(reply, report.position);
      // The report's readonly shapes are the schema's, read-only.
      return { ...report, position: report.position ? formatPosition(report.position) : null } as z.infer<typeof ReportSchema>;
    },
  );

  app.get(
    "/v1/datacenters",
    {
      schema: { operationId: "listDatacenters", summary: "List datacenters", tags: TAGS, querystring: PageQuerySchema.extend(MinPositionQuerySchema.shape), response: { 200: pageSchema(DatacenterSummarySchema) } },
      config: { access: { level: "authenticated" } },
      preValidation: requireReader,
    },
    async (request) => {
      const { limit, cursor, minPosition } = request.query;
      await deps.ryw.beforeRead(minPosition);
      const rows = await deps.read.listDatacenters({ limit: limit + 1, ...optional("after", decodeCursor("datacenters", cursor)) });
      return toPage("datacenters", rows, limit, (row) => row.name, renderDatacenterSummary);
    },
  );

  app.get(
    "/v1/datacenters/:datacenter",
    {
      schema: { operationId: "getDatacenter", summary: "Get a datacenter with its racks, switches and links", tags: TAGS, params: DatacenterParams, querystring: MinPositionQuerySchema, response: { 200: DatacenterSchema } },
      config: { access: { level: "authenticated" } },
    },
    async (request, reply) => {
      const { datacenter } = request.params;
      if (!canReadInventory(actorOf(request))) throw datacenterNotFound(datacenter);
      await deps.ryw.beforeRead(request.query.minPosition);
      const row = await deps.read.getDatacenter(datacenter);
      if (!row) throw datacenterNotFound(datacenter);
      if (sendIfNotModified(request, reply, row.stream_version)) return reply;
      return renderDatacenter(row, await deps.read.datacenterContents(datacenter));
    },
  );

  app.get(
    "/v1/hosts",
    {
      schema: { operationId: "listHosts", summary: "List hosts", tags: TAGS, querystring: HostListQuery, response: { 200: pageSchema(HostSchema) } },
      config: { access: { level: "authenticated" } },
      preValidation: requireReader,
    },
    async (request) => {
      const { limit, cursor, datacenter, rack, name, pendingApproval, minPosition } = request.query;
      await deps.ryw.beforeRead(minPosition);
      const rows = await deps.read.listHosts({
        limit: limit + 1,
        ...optional("after", decodeCursor("hosts", cursor)),
        ...optional("datacenter", datacenter),
        ...optional("rack", rack),
        ...optional("name", name),
        ...optional("pendingApproval", pendingApproval === undefined ? undefined : pendingApproval === "true"),
      });
      return toPage("hosts", rows, limit, (row) => row.host_id, renderHost);
    },
  );

  app.get(
    "/v1/hosts/:hostId",
    {
      schema: { operationId: "getHost", summary: "Get a host (its BMC endpoint without any secret)", tags: TAGS, params: HostParams, querystring: MinPositionQuerySchema, response: { 200: HostSchema } },
      config: { access: { level: "authenticated" } },
    },
    async (request, reply) => {
      const { hostId } = request.params;
      if (!canReadInventory(actorOf(request))) throw hostNotFound(hostId);
      await deps.ryw.beforeRead(request.query.minPosition);
      const row = await deps.read.getHost(hostId);
      if (!row) throw hostNotFound(hostId);
      if (sendIfNotModified(request, reply, row.version)) return reply;
      return renderHost(row);
    },
  );

  app.post(
    "/v1/hosts/:hostId/approve-identity",
    {
      schema: {
        operationId: "approveHostIdentity",
        summary: "Approve a host's pending identity change (platform-admin)",
        description: "The proposed serial/MACs/BMC address become the host's. With changeId, refused (409) when another change is pending now; approving an approved change again changes nothing.",
        tags: TAGS,
        params: HostParams,
        headers: idempotencyHeader,
        body: ApproveBody,
        response: { 200: HostSchema },
      },
      config: { access: { level: "authenticated" } },
      preValidation: async (request) => {
        const actor = actorOf(request);
        const { hostId } = request.params as { hostId: string };
        if (!canReadInventory(actor)) throw hostNotFound(hostId);
        if (!isPlatformAdmin(actor)) throw new ApiProblem("forbidden", "approving a host's identity needs platform-admin");
      },
    },
    async (request, reply) => {
      const { hostId } = request.params;
      const row = await deps.read.getHost(hostId);
      if (!row) throw hostNotFound(hostId);
      const actor = actorOf(request);
      const changeId = request.body?.changeId;
      const result = await approveHostIdentityChange(
        deps.store,
        { datacenter: row.datacenter, hostId, ...(changeId !== undefined ? { changeId } : {}) },
        { actor: { kind: actor.kind, id: actor.id }, correlationId: request.id, scope: { tenantId: PLATFORM_TENANT } },
      );
      await deps.ryw.afterWrite(reply, result.position);
      const after = (await deps.read.getHost(hostId)) ?? row;
      reply.header("etag", etagFor(after.version));
      return renderHost(after);
    },
  );
};

function invalid(errors: Array<{ path: string; message: string }>): ApiProblem {
  return new ApiProblem("inventory_invalid", `${errors.length} problem${errors.length === 1 ? "" : "s"} in the inventory document; nothing was imported`, {
    errors: errors.map((e) => ({ ...e, in: "body" as const })),
  });
}

function optional<K extends string, V>(key: K, value: V | undefined): { [P in K]?: V } {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: V };
}
