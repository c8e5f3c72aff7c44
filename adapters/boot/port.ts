import type { Readable } from "node:stream";
import type { TalosSecrets } from "../../domain/maskin/talos-config.ts";

/**
 * Ports of the boot service (api/boot/): where the boot images are and where
 * a cluster's Talos secrets come from. Implementations in this folder read
 * configuration (URLs, a local directory); the API only sees these shapes.
 */

/** Where one boot file is: a URL the machine fetches itself, or a local file the boot service serves at /boot/assets/<image>/<file>. */
export type AssetSource =
  | { readonly kind: "url"; readonly url: string }
  | { readonly kind: "file"; readonly path: string; readonly file: string };

/** One bootable image of the catalog: a kernel and an initramfs of a versioned release (`talos-v1.9.5`). */
export interface BootImage {
  /** `talos-<version>`: the catalog key and the asset path segment. */
  readonly name: string;
  /** The release, e.g. `v1.9.5`. */
  readonly version: string;
  readonly kernel: AssetSource;
  readonly initramfs: AssetSource;
  /** Kernel arguments this image needs (Talos: `talos.platform=metal` and its hardening flags), before the per-host ones. */
  readonly kernelArgs: readonly string[];
  /** The installer image Talos writes to disk (`machine.install.image`). */
  readonly installImage: string;
}

/**
 * The wipe image a release netboots (domain/maskin/README.md, "Release and
 * wipe"): a kernel and an initramfs whose init overwrites the machine's disks
 * and reports to `dv.wipe.callback=<URL>` from its kernel command line.
 * Served (when local) at /boot/assets/dv-wipe/<file>.
 */
export interface WipeImage {
  /** Always `dv-wipe` (the asset path segment; never a `talos-` name, so it cannot clash with the catalog). */
  readonly name: typeof WIPE_IMAGE_NAME;
  readonly kernel: AssetSource;
  readonly initramfs: AssetSource;
  /** Kernel arguments before the per-host `dv.wipe.callback=`. */
  readonly kernelArgs: readonly string[];
}

export const WIPE_IMAGE_NAME = "dv-wipe";

export interface OpenedAsset {
  readonly stream: Readable;
  readonly size: number;
}

export interface ImageCatalog {
  /** The image hosts are installed with unless told otherwise; null when the catalog is empty. */
  defaultImage(): BootImage | null;
  image(name: string): BootImage | null;
  images(): readonly BootImage[];
  /** A local file of an image, by the names the catalog knows (never a path from the request); null when there is none. */
  openAsset(image: string, file: string): Promise<OpenedAsset | null>;
}

/** Which cluster a node joins: its tenancy and the name it is given. */
export interface ClusterRef {
  readonly tenantId: string;
  readonly projectId: string;
  readonly environmentId: string | null;
  readonly name: string;
}

/** A cluster's secrets bundle (`talosctl gen secrets`); null when this boot service has none for it. */
export interface TalosSecretsSource {
  forCluster(cluster: ClusterRef): Promise<TalosSecrets | null>;
}
