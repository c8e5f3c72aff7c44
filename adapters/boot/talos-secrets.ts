import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { parse } from "yaml";
import { TalosSecretsSchema, type TalosSecrets } from "../../domain/maskin/talos-config.ts";
import type { ClusterRef, TalosSecretsSource } from "./port.ts";

/**
 * Talos secrets bundles from a directory (`DV_TALOS_SECRETS_DIR`), one file
 * per cluster, as `talosctl gen secrets -o FILE` writes it:
 *
 *     <dir>/<tenantId>/<projectId>.yaml                    the project's cluster
 *     <dir>/<tenantId>/<projectId>/<environmentId>.yaml    an environment's cluster
 *
 * Keyed by tenancy ids, not by cluster name, so two tenants' projects of the
 * same name can never share a PKI. A missing file is `null` (the boot service
 * answers 503 for that node's config); a file that is not a valid bundle is an
 * error naming the file and the fields, never their values.
 */
export class DirectoryTalosSecrets implements TalosSecretsSource {
  constructor(private readonly dir: string) {}

  async forCluster(cluster: ClusterRef): Promise<TalosSecrets | null> {
    const segments = [cluster.tenantId, cluster.projectId, ...(cluster.environmentId !== null ? [cluster.environmentId] : [])];
    if (segments.some((s) => !/^[A-Za-z0-9_~-][A-Za-z0-9._~-]*$/.test(s) || s === "..")) return null;
    const file = join(this.dir, ...segments.slice(0, -1), `${segments.at(-1)!}.yaml`);
    let text: string;
    try {
      text = await readFile(file, "utf8");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return null;
      throw error;
    }
    const parsed = TalosSecretsSchema.safeParse(parse(text));
    if (!parsed.success) {
      throw new Error(`${file} is not a talosctl secrets bundle: ${parsed.error.issues.map((i) => i.path.join(".")).join(", ")}`);
    }
    return parsed.data;
  }
}

/** The same bundle for every cluster, or a function of the cluster (tests, and a single-cluster lab). */
export class StaticTalosSecrets implements TalosSecretsSource {
  constructor(private readonly bundle: TalosSecrets | ((cluster: ClusterRef) => TalosSecrets | null)) {}

  async forCluster(cluster: ClusterRef): Promise<TalosSecrets | null> {
    return typeof this.bundle === "function" ? this.bundle(cluster) : this.bundle;
  }
}

/** DV_TALOS_SECRETS_DIR, or null (then every config request answers 503 boot_config_unavailable). */
export function talosSecretsFromEnv(env: NodeJS.ProcessEnv): TalosSecretsSource | null {
  const dir = env.DV_TALOS_SECRETS_DIR?.trim();
  return dir ? new DirectoryTalosSecrets(dir) : null;
}
