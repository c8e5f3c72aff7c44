import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type pg from "pg";
import { stringify } from "yaml";
import { openImageFile } from "../../adapters/boot/catalog.ts";
import type { ImageCatalog, TalosSecretsSource, WipeImage } from "../../adapters/boot/port.ts";
import type { CommandStore } from "../../commands/pipeline.ts";
import { executeHostCommand } from "../../commands/maskin/index.ts";
import { normalizeMac } from "../../domain/inventory/names.ts";
import { wipeInProgress, type HostState } from "../../domain/maskin/index.ts";
import { talosMachineConfig } from "../../domain/maskin/talos-config.ts";
import type { Actor } from "../../domain/shared/envelope.ts";
import { PLATFORM_TENANT } from "../../domain/shared/envelope.ts";
import { DomainError } from "../../domain/shared/errors.ts";
import { ApiProblem } from "../problem.ts";
import { IPXE_CONTENT_TYPE, renderExitScript, renderInstallScript, renderWipeScript } from "./ipxe.ts";
import { BootReadModel } from "./read.ts";
import { issueInstallToken, sameDigest, tokenDigest, tokenFromQuery } from "./token.ts";

/**
 * The boot service: route group `/boot/`, called by machines, not users.
 * Public (no bearer token); a machine is identified by its MAC (the iPXE
 * script) and then by the one-time install token that script carried (the
 * machine config and the installer's callback). See api/boot/README.md.
 *
 * | method | path | answers |
 * |---|---|---|
 * | GET | /boot/ipxe?mac=..., /boot/ipxe/{mac} | iPXE script: the wipe image for a host whose release asked for a wipe (records HostWipeNetbootFetched), the installer for a host being provisioned (records HostNetbootFetched with the token's digest), else `exit` |
 * | GET | /boot/assets/{image}/{file} | a kernel/initramfs of the catalog's local directory (or of the wipe image, `dv-wipe`) |
 * | GET | /boot/config/{hostId}?token= | the node's Talos machine config (YAML); 401 install_token_invalid unless the token is current and unused |
 * | POST, GET | /boot/callback/{hostId}?token= | the installer's report `{outcome, message?, mac?}` (JSON, form, or query): records HostInstallReported, consumes the token; 204, again 401 |
 * | POST, GET | /boot/wipe-callback/{hostId}?token= | the wiper's report `{outcome, message?, mac?, devices?, bytes?}`: records HostWipeReported, consumes the wipe token; 204, again 401 wipe_token_invalid |
 *
 * The token never reaches a log or an event: only its SHA-256 digest is
 * recorded, and these routes log their URL with the token redacted.
 */
export interface BootTalosOptions {
  /** Where a cluster's secrets bundle comes from; null: config requests answer 503 boot_config_unavailable. */
  readonly secrets: TalosSecretsSource | null;
  /** The control plane endpoint; `{cluster}` and `{datacenter}` are replaced. Default `https://{cluster}:6443`. */
  readonly endpoint?: string;
  /** machine.install.disk (default /dev/sda). */
  readonly installDisk?: string;
  /** machine.install.wipe (default false). */
  readonly wipe?: boolean;
  /** Kubernetes version of the control plane and kubelet images (default v1.32.3). */
  readonly kubernetesVersion?: string;
}

export interface BootOptions {
  readonly catalog: ImageCatalog;
  /** The wipe image releases netboot; null/absent: a wipe netboot gets `exit` (and the release waits until its deadline). */
  readonly wipe?: WipeImage | null;
  /** How machines reach this service (`http://10.0.2.2:8080`); default: the scheme and Host of each request. */
  readonly baseUrl?: string;
  readonly talos?: BootTalosOptions;
  /** Clock of the recorded facts (tests). */
  readonly now?: () => Date;
}

export interface BootRouteDeps extends BootOptions {
  readonly pool: pg.Pool;
  readonly store: CommandStore;
}

export const BOOT_ACTOR: Actor = { kind: "service", id: "boot-service" };
export const DEFAULT_TALOS_ENDPOINT = "https://{cluster}:6443";
export const DEFAULT_KUBERNETES_VERSION = "v1.32.3";

const config = { access: { level: "public" as const } };
const schema = { hide: true } as Record<string, unknown>;

/** Logs a boot request's URL with any token redacted. */
export function redactUrl(url: string): string {
  return url.replace(/([?&]token=)[^&#]*/gi, "$1[redacted]");
}
const logSerializers = {
  req: (request: FastifyRequest) => ({
    method: request.method,
    url: redactUrl(request.url),
    host: request.host,
    remoteAddress: request.ip,
  }),
};

export async function bootRoutes(app: FastifyInstance, deps: BootRouteDeps): Promise<void> {
  const read = new BootReadModel(deps.pool, deps.store);
  const now = deps.now ?? (() => new Date());
  const baseUrlOf = (request: FastifyRequest) => (deps.baseUrl ?? `${request.protocol}://${request.host}`).replace(/\/+$/, "");
  const context = (request: FastifyRequest, datacenter: string | null) => ({
    actor: BOOT_ACTOR,
    correlationId: request.id,
    scope: { tenantId: PLATFORM_TENANT },
    datacenter,
    occurredAt: now(),
  });

  // Form posts (busybox `wget --post-data`) are parsed here only; JSON stays fastify's.
  app.addContentTypeParser("application/x-www-form-urlencoded", { parseAs: "string", bodyLimit: 16 * 1024 }, (_request, body, done) => {
    done(null, Object.fromEntries(new URLSearchParams(body as string)));
  });

  const routeOptions = { config, schema, logSerializers };

  // ---- iPXE script by MAC ---------------------------------------------------------------
  const ipxe = async (request: FastifyRequest, reply: FastifyReply, rawMac: unknown) => {
    reply.header("cache-control", "no-store").type(IPXE_CONTENT_TYPE);
    const mac = typeof rawMac === "string" ? normalizeMac(rawMac) : undefined;
    const host = mac ? await read.hostByMac(mac) : undefined;
    if (mac && host && wipeInProgress(await read.hostState(host.hostId))) return wipeScript(request, reply, host, mac);
    const image = deps.catalog.defaultImage();
    if (!mac || !host || !image) {
      request.log.info({ mac: mac ?? null, hostId: host?.hostId ?? null, image: image?.name ?? null }, "netboot: nothing to install, answering exit");
      return reply.send(renderExitScript());
    }
    const { token, digest } = issueInstallToken();
    try {
      await executeHostCommand(deps.store, { type: "RecordNetbootFetched", hostId: host.hostId, mac, tokenDigest: digest, at: now().toISOString() }, context(request, host.datacenter));
    } catch (error) {
      if (!(error instanceof DomainError)) throw error;
      // Not provisioning, or the install was reported already: boot the disk (no netboot loop).
      request.log.info({ hostId: host.hostId, mac, code: error.code }, "netboot: host not waiting for a netboot, answering exit");
      return reply.send(renderExitScript());
    }
    const base = baseUrlOf(request);
    const id = encodeURIComponent(host.hostId);
    const assetUrl = (source: typeof image.kernel) =>
      source.kind === "url" ? source.url : `${base}/boot/assets/${encodeURIComponent(image.name)}/${encodeURIComponent(source.file)}`;
    request.log.info({ hostId: host.hostId, mac, image: image.name }, "netboot: serving the installer");
    return reply.send(
      renderInstallScript({
        imageName: image.name,
        hostName: host.name,
        kernelUrl: assetUrl(image.kernel),
        initramfsUrl: assetUrl(image.initramfs),
        kernelArgs: image.kernelArgs,
        configUrl: `${base}/boot/config/${id}?token=${token}`,
        callbackUrl: `${base}/boot/callback/${id}?token=${token}`,
      }),
    );
  };
  /** A release asked for this host's wipe: the wipe image with a fresh one-time wipe token (a new fetch replaces the token). */
  const wipeScript = async (request: FastifyRequest, reply: FastifyReply, host: { hostId: string; name: string; datacenter: string }, mac: string) => {
    const wipe = deps.wipe ?? null;
    if (!wipe) {
      request.log.warn({ hostId: host.hostId, mac }, "netboot: the host's release asks for a wipe, but no wipe image is configured (DV_WIPE_ASSETS_DIR or DV_WIPE_*_URL): answering exit");
      return reply.send(renderExitScript());
    }
    const { token, digest } = issueInstallToken();
    try {
      await executeHostCommand(deps.store, { type: "RecordWipeNetbootFetched", hostId: host.hostId, mac, tokenDigest: digest, at: now().toISOString() }, context(request, host.datacenter));
    } catch (error) {
      if (!(error instanceof DomainError)) throw error;
      request.log.info({ hostId: host.hostId, mac, code: error.code }, "netboot: host not waiting for a wipe netboot, answering exit");
      return reply.send(renderExitScript());
    }
    const base = baseUrlOf(request);
    const assetUrl = (source: WipeImage["kernel"]) =>
      source.kind === "url" ? source.url : `${base}/boot/assets/${encodeURIComponent(wipe.name)}/${encodeURIComponent(source.file)}`;
    request.log.info({ hostId: host.hostId, mac }, "netboot: serving the wipe image");
    return reply.send(
      renderWipeScript({
        hostName: host.name,
        kernelUrl: assetUrl(wipe.kernel),
        initramfsUrl: assetUrl(wipe.initramfs),
        kernelArgs: wipe.kernelArgs,
        callbackUrl: `${base}/boot/wipe-callback/${encodeURIComponent(host.hostId)}?token=${token}`,
      }),
    );
  };
  app.get("/boot/ipxe", routeOptions, (request, reply) => ipxe(request, reply, (request.query as Record<string, unknown>).mac));
  app.get("/boot/ipxe/:mac", routeOptions, (request, reply) => ipxe(request, reply, (request.params as { mac: string }).mac));

  // ---- local boot assets --------------------------------------------------------------------
  app.get("/boot/assets/:image/:file", routeOptions, async (request, reply) => {
    const { image, file } = request.params as { image: string; file: string };
    const wipe = deps.wipe ?? null;
    const asset = wipe && image === wipe.name ? await openImageFile([wipe.kernel, wipe.initramfs], file) : await deps.catalog.openAsset(image, file);
    if (!asset) throw new ApiProblem("boot_asset_not_found", `no boot asset ${image}/${file}`, { details: { image, file } });
    return reply.header("content-length", String(asset.size)).header("cache-control", "public, max-age=3600").type("application/octet-stream").send(asset.stream);
  });

  // ---- Talos machine config -------------------------------------------------------------------
  app.get("/boot/config/:hostId", routeOptions, async (request, reply) => {
    const { hostId } = request.params as { hostId: string };
    const token = tokenFromQuery((request.query as Record<string, unknown>).token);
    const state = token ? await read.hostState(hostId) : null;
    const p = state?.provisioning ?? null;
    if (!token || !state || !p || !tokenIsCurrent(state, tokenDigest(token))) throw invalidToken(hostId);

    const talos = deps.talos;
    const host = await read.host(hostId);
    const image = deps.catalog.defaultImage();
    const clusterName = await read.clusterName(p);
    const secrets = talos?.secrets ? await talos.secrets.forCluster({ tenantId: p.tenantId, projectId: p.projectId, environmentId: p.environmentId, name: clusterName }) : null;
    if (!talos || !secrets || !host || !image) {
      throw new ApiProblem("boot_config_unavailable", `this boot service has no Talos secrets for cluster ${clusterName}`, { headers: { "retry-after": "30" } });
    }
    const generated = talosMachineConfig({
      role: p.role,
      hostname: host.name.toLowerCase(),
      cluster: { name: clusterName, endpoint: (talos.endpoint ?? DEFAULT_TALOS_ENDPOINT).replaceAll("{cluster}", clusterName).replaceAll("{datacenter}", p.datacenter) },
      install: { disk: talos.installDisk ?? "/dev/sda", image: image.installImage, wipe: talos.wipe ?? false },
      kubernetesVersion: talos.kubernetesVersion ?? DEFAULT_KUBERNETES_VERSION,
      secrets,
    });
    if (generated instanceof DomainError) {
      request.log.warn({ hostId, code: generated.code, errors: generated.details.errors }, "boot: Talos config inputs refused");
      throw new ApiProblem("boot_config_unavailable", generated.message, { details: { errors: generated.details.errors } });
    }
    return reply.header("cache-control", "no-store").type("application/yaml").send(stringify(generated));
  });

  // ---- installer callback -------------------------------------------------------------------------
  const callback = async (request: FastifyRequest, reply: FastifyReply) => {
    const { hostId } = request.params as { hostId: string };
    const query = request.query as Record<string, unknown>;
    const token = tokenFromQuery(query.token);
    if (!token) throw invalidToken(hostId);
    const body = request.method === "POST" && request.body && typeof request.body === "object" ? (request.body as Record<string, unknown>) : {};
    const field = (name: string): string | undefined => {
      const value = body[name] ?? query[name];
      return typeof value === "string" ? value : undefined;
    };
    const outcome = field("outcome");
    if (outcome !== "succeeded" && outcome !== "failed") {
      throw new ApiProblem("validation_failed", "outcome must be succeeded or failed", {
        errors: [{ path: "outcome", message: "must be succeeded or failed", in: request.method === "POST" && body.outcome !== undefined ? "body" : "query" }],
      });
    }
    const reportedMac = field("mac");
    const message = [field("message") ?? "", reportedMac ? `(reported by ${normalizeMac(reportedMac) ?? "an invalid MAC"})` : ""].filter(Boolean).join(" ").slice(0, 2000);
    const host = await read.host(hostId);
    try {
      await executeHostCommand(
        deps.store,
        { type: "RecordInstallReported", hostId, tokenDigest: tokenDigest(token), outcome, message, at: now().toISOString() },
        context(request, host?.datacenter ?? null),
      );
    } catch (error) {
      if (error instanceof DomainError && error.code === "install_token_invalid") throw invalidToken(hostId);
      throw error;
    }
    request.log.info({ hostId, outcome }, "boot: install reported");
    return reply.code(204).send();
  };
  app.post("/boot/callback/:hostId", { ...routeOptions, bodyLimit: 16 * 1024 }, callback);
  app.get("/boot/callback/:hostId", routeOptions, callback);

  // ---- wiper callback -------------------------------------------------------------------------------
  const wipeCallback = async (request: FastifyRequest, reply: FastifyReply) => {
    const { hostId } = request.params as { hostId: string };
    const query = request.query as Record<string, unknown>;
    const token = tokenFromQuery(query.token);
    if (!token) throw invalidWipeToken(hostId);
    const body = request.method === "POST" && request.body && typeof request.body === "object" ? (request.body as Record<string, unknown>) : {};
    const field = (name: string): unknown => body[name] ?? query[name];
    const text = (name: string): string | undefined => {
      const value = field(name);
      return typeof value === "string" ? value : undefined;
    };
    const outcome = text("outcome");
    if (outcome !== "succeeded" && outcome !== "failed") {
      throw new ApiProblem("validation_failed", "outcome must be succeeded or failed", {
        errors: [{ path: "outcome", message: "must be succeeded or failed", in: request.method === "POST" && body.outcome !== undefined ? "body" : "query" }],
      });
    }
    // devices: a JSON array, or one string of devices separated by commas or spaces (busybox wget: a query).
    const rawDevices = field("devices");
    const devices = (Array.isArray(rawDevices) ? rawDevices.filter((d): d is string => typeof d === "string") : typeof rawDevices === "string" ? rawDevices.split(/[\s,]+/) : [])
      .map((d) => d.trim())
      .filter((d) => d.length > 0 && d.length <= 200)
      .slice(0, 64);
    const rawBytes = field("bytes");
    const bytesWiped = typeof rawBytes === "number" ? rawBytes : typeof rawBytes === "string" && /^\d{1,16}$/.test(rawBytes) ? Number(rawBytes) : 0;
    if (!Number.isSafeInteger(bytesWiped) || bytesWiped < 0) {
      throw new ApiProblem("validation_failed", "bytes must be a non-negative integer", { errors: [{ path: "bytes", message: "must be a non-negative integer", in: "query" }] });
    }
    const reportedMac = text("mac");
    const message = [text("message") ?? "", reportedMac ? `(reported by ${normalizeMac(reportedMac) ?? "an invalid MAC"})` : ""].filter(Boolean).join(" ").slice(0, 2000);
    const host = await read.host(hostId);
    try {
      await executeHostCommand(
        deps.store,
        { type: "RecordWipeReported", hostId, tokenDigest: tokenDigest(token), outcome, message, devices, bytesWiped, at: now().toISOString() },
        context(request, host?.datacenter ?? null),
      );
    } catch (error) {
      if (error instanceof DomainError && error.code === "wipe_token_invalid") throw invalidWipeToken(hostId);
      throw error;
    }
    request.log.info({ hostId, outcome, devices, bytesWiped }, "boot: wipe reported");
    return reply.code(204).send();
  };
  app.post("/boot/wipe-callback/:hostId", { ...routeOptions, bodyLimit: 16 * 1024 }, wipeCallback);
  app.get("/boot/wipe-callback/:hostId", routeOptions, wipeCallback);

  // Anything else under /boot/ is a 404, logged without its token like the routes above.
  app.all("/boot/*", routeOptions, async (request) => {
    const path = request.url.split("?")[0] ?? request.url;
    throw new ApiProblem("route_not_found", `no route ${request.method} ${path}`);
  });
}

/** The host is in provisioning, has fetched its script, and this is the digest of its unused token. */
function tokenIsCurrent(state: HostState, digest: string): boolean {
  const p = state.provisioning;
  return state.state === "provisioning" && p !== null && p.stage === "netboot-fetched" && p.token !== null && !p.token.consumed && sameDigest(p.token.digest, digest);
}

function invalidWipeToken(hostId: string): ApiProblem {
  return new ApiProblem("wipe_token_invalid", `no valid wipe token for host ${hostId}`, { details: { hostId } });
}

function invalidToken(hostId: string): ApiProblem {
  return new ApiProblem("install_token_invalid", `no valid install token for host ${hostId}`, { details: { hostId } });
}
