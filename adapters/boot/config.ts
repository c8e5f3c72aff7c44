import { CatalogConfigError, imageCatalogFromEnv, wipeImageFromEnv } from "./catalog.ts";
import type { ImageCatalog, TalosSecretsSource, WipeImage } from "./port.ts";
import { talosSecretsFromEnv } from "./talos-secrets.ts";

/**
 * The boot service's configuration from the environment (`dv up`), in the
 * shape api/boot's BootOptions takes. Null when no image is configured: then
 * the server has no /boot/ routes.
 *
 * | variable | what |
 * |---|---|
 * | DV_BOOT_ASSETS_DIR | local images: `talos-<version>/{vmlinuz*,initramfs*}` served at /boot/assets/ |
 * | DV_TALOS_KERNEL_URL, DV_TALOS_INITRAMFS_URL, DV_TALOS_VERSION | or an operator's mirror of one release |
 * | DV_BOOT_IMAGE | the image hosts get (default: the newest) |
 * | DV_BOOT_KERNEL_ARGS | replaces the Talos kernel arguments (lab stand-in: `console=ttyS0 panic=-1`) |
 * | DV_TALOS_INSTALLER_IMAGE | machine.install.image (default ghcr.io/siderolabs/installer:<version>) |
 * | DV_BOOT_BASE_URL | how machines reach this service, e.g. http://10.0.2.2:8080 (default: the Host they asked) |
 * | DV_TALOS_SECRETS_DIR | `<tenant>/<project>[/<environment>].yaml` bundles of `talosctl gen secrets` |
 * | DV_TALOS_ENDPOINT | control plane endpoint, `{cluster}`/`{datacenter}` replaced (default https://{cluster}:6443) |
 * | DV_TALOS_INSTALL_DISK, DV_TALOS_INSTALL_WIPE | machine.install.disk (/dev/sda), .wipe (false) |
 * | DV_TALOS_KUBERNETES_VERSION | Kubernetes images (default v1.32.3) |
 * | DV_WIPE_ASSETS_DIR | the wipe image releases netboot: a kernel + initramfs, served at /boot/assets/dv-wipe/ |
 * | DV_WIPE_KERNEL_URL, DV_WIPE_INITRAMFS_URL | or where iPXE fetches them |
 * | DV_WIPE_KERNEL_ARGS | its kernel arguments before `dv.wipe.callback=` (default `console=tty0 console=ttyS0,115200`) |
 */
export interface BootConfig {
  readonly catalog: ImageCatalog;
  /** The wipe image of releases; null: none configured (a release's wipe then never starts, see catalog.ts wipeImageFromEnv). */
  readonly wipe: WipeImage | null;
  readonly baseUrl?: string;
  readonly talos: {
    readonly secrets: TalosSecretsSource | null;
    readonly endpoint?: string;
    readonly installDisk?: string;
    readonly wipe?: boolean;
    readonly kubernetesVersion?: string;
  };
}

export { CatalogConfigError as BootConfigError };

export async function bootConfigFromEnv(env: NodeJS.ProcessEnv): Promise<BootConfig | null> {
  const catalog = await imageCatalogFromEnv(env);
  if (!catalog) return null;
  const value = (name: string) => env[name]?.trim() || undefined;
  const baseUrl = value("DV_BOOT_BASE_URL");
  if (baseUrl !== undefined && !/^https?:\/\/[^\s/?#]+\/?$/.test(baseUrl)) {
    throw new CatalogConfigError("DV_BOOT_BASE_URL must be http(s)://host[:port], how machines reach this service");
  }
  const wipe = value("DV_TALOS_INSTALL_WIPE");
  if (wipe !== undefined && !["true", "false"].includes(wipe)) throw new CatalogConfigError("DV_TALOS_INSTALL_WIPE must be true or false");
  const endpoint = value("DV_TALOS_ENDPOINT");
  const installDisk = value("DV_TALOS_INSTALL_DISK");
  const kubernetesVersion = value("DV_TALOS_KUBERNETES_VERSION");
  const wipeImage = await wipeImageFromEnv(env);
  return {
    catalog,
    wipe: wipeImage,
    ...(baseUrl !== undefined ? { baseUrl: baseUrl.replace(/\/$/, "") } : {}),
    talos: {
      secrets: talosSecretsFromEnv(env),
      ...(endpoint !== undefined ? { endpoint } : {}),
      ...(installDisk !== undefined ? { installDisk } : {}),
      ...(wipe !== undefined ? { wipe: wipe === "true" } : {}),
      ...(kubernetesVersion !== undefined ? { kubernetesVersion } : {}),
    },
  };
}
