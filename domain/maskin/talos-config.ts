import { z } from "zod";
import { DomainError } from "../shared/errors.ts";

/**
 * Talos machine configuration (`version: v1alpha1`) for one node, generated
 * purely from its inputs: the node's role and hostname, the cluster it joins,
 * how to install, and the cluster's secrets bundle. Nothing is invented here:
 * every token, CA and key comes in with `secrets` (the bundle `talosctl gen
 * secrets` writes, see TalosSecretsSchema), so two nodes of a cluster get the
 * same PKI and the output is a function of the input alone.
 *
 * What a node of each role receives follows what `talosctl gen config` does:
 * - controlplane: the OS CA and the Kubernetes CA *with* their private keys,
 *   the etcd CA, the aggregator CA, the service-account key and the secretbox
 *   encryption secret (it runs the API server, etcd and trustd);
 * - worker: the same CA certificates *without* keys (`key: ""`) and nothing
 *   of etcd, the aggregator, service accounts or secretbox.
 *
 * The field names are those of the Talos v1.x configuration reference
 * (https://www.talos.dev/v1.9/reference/configuration/v1alpha1/config/);
 * TalosConfigSchema restates the documented fields this module emits, and the
 * unit tests check every generated config against it.
 */

export const TALOS_ROLES = ["controlplane", "worker"] as const;
export type TalosRole = (typeof TALOS_ROLES)[number];

/** A Kubernetes/Talos bootstrap-style token: 6 + "." + 16 lowercase alphanumerics. */
export const TALOS_TOKEN_PATTERN = /^[a-z0-9]{6}\.[a-z0-9]{16}$/;
const Token = z.string().regex(TALOS_TOKEN_PATTERN, { message: "must be a token of the form [a-z0-9]{6}.[a-z0-9]{16}" });

const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;
function base64Bytes(value: string): number | undefined {
  if (!BASE64.test(value) || value.length % 4 !== 0) return undefined;
  const padding = value.endsWith("==") ? 2 : value.endsWith("=") ? 1 : 0;
  return (value.length / 4) * 3 - padding;
}
function base64Text(value: string): string | undefined {
  if (base64Bytes(value) === undefined) return undefined;
  return Buffer.from(value, "base64").toString("latin1");
}

/** 32 random bytes, base64 (cluster id, cluster secret, secretbox secret). */
const Secret32 = z.string().refine((v) => base64Bytes(v) === 32, { message: "must be 32 bytes, base64-encoded" });
/** A PEM document, base64-encoded (how Talos carries `crt` and `key`). */
const pem = (kind: "CERTIFICATE" | "PRIVATE KEY") =>
  z.string().refine((v) => {
    const text = base64Text(v);
    return text !== undefined && new RegExp(`-----BEGIN [A-Z0-9 ]*${kind}-----`).test(text);
  }, { message: `must be a base64-encoded PEM ${kind === "CERTIFICATE" ? "certificate" : "private key"}` });
const Certificate = pem("CERTIFICATE");
const PrivateKey = pem("PRIVATE KEY");
const KeyPair = z.strictObject({ crt: Certificate, key: PrivateKey });

/**
 * A cluster's secrets bundle, in the shape `talosctl gen secrets` writes
 * (secrets.yaml): the same keys, so an operator's bundle parses as is.
 */
export const TalosSecretsSchema = z.object({
  cluster: z.object({ id: Secret32, secret: Secret32 }),
  secrets: z.object({ bootstraptoken: Token, secretboxencryptionsecret: Secret32 }),
  trustdinfo: z.object({ token: Token }),
  certs: z.object({
    etcd: KeyPair,
    k8s: KeyPair,
    k8saggregator: KeyPair,
    k8sserviceaccount: z.object({ key: PrivateKey }),
    os: KeyPair,
  }),
});
export type TalosSecrets = z.infer<typeof TalosSecretsSchema>;

const DnsLabel = z.string().regex(/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/, { message: "must be a DNS label (lowercase letters, digits, '-')" });
const DnsName = z.string().max(253).regex(/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/, { message: "must be a DNS name" });
const Cidr = z.string().regex(/^(\d{1,3}(\.\d{1,3}){3}\/\d{1,2}|[0-9a-fA-F:]+\/\d{1,3})$/, { message: "must be a CIDR" });
const Endpoint = z.string().regex(/^https:\/\/[^\s/]+(:\d+)?\/?$/, { message: "must be an https URL with host and optional port, e.g. https://10.0.0.10:6443" });
const KubernetesVersion = z.string().regex(/^v?\d+\.\d+\.\d+$/, { message: "must be a Kubernetes version like v1.31.4" });
const ImageRef = z.string().regex(/^[a-z0-9][a-z0-9.\-/:_@]*$/, { message: "must be a container image reference" });
const DevicePath = z.string().regex(/^\/dev\/[A-Za-z0-9/_.-]+$/, { message: "must be a device path under /dev" });
const KernelArg = z.string().regex(/^[^\s]+$/, { message: "must be one kernel argument without spaces" });

export const TalosConfigInputSchema = z.object({
  role: z.enum(TALOS_ROLES),
  /** The node's hostname (machine.network.hostname). */
  hostname: DnsLabel,
  cluster: z.object({
    name: DnsLabel,
    /** The canonical control plane endpoint (load balancer or VIP), e.g. https://10.0.0.10:6443. */
    endpoint: Endpoint,
    dnsDomain: DnsName.default("cluster.local"),
    podSubnets: z.array(Cidr).min(1).default(["10.244.0.0/16"]),
    serviceSubnets: z.array(Cidr).min(1).default(["10.96.0.0/12"]),
  }),
  install: z.object({
    disk: DevicePath,
    /** The installer image of the Talos version booted, e.g. ghcr.io/siderolabs/installer:v1.9.5. */
    image: ImageRef,
    wipe: z.boolean(),
    extraKernelArgs: z.array(KernelArg).default([]),
  }),
  kubernetesVersion: KubernetesVersion,
  secrets: TalosSecretsSchema,
});
export type TalosConfigInput = z.input<typeof TalosConfigInputSchema>;

// ---------- the documented shape of what is emitted ----------------------------------

const CaWithKey = z.strictObject({ crt: Certificate, key: PrivateKey });
const CaWithoutKey = z.strictObject({ crt: Certificate, key: z.literal("") });
const Image = (repository: string) => z.string().refine((v) => v.startsWith(`${repository}:`), { message: `must be ${repository}:<tag>` });

const MachineSchema = z.strictObject({
  type: z.enum(TALOS_ROLES),
  token: Token,
  ca: z.union([CaWithKey, CaWithoutKey]),
  certSANs: z.array(z.string()),
  kubelet: z.strictObject({ image: Image("ghcr.io/siderolabs/kubelet"), defaultRuntimeSeccompProfileEnabled: z.boolean(), disableManifestsDirectory: z.boolean() }),
  network: z.strictObject({ hostname: DnsLabel }),
  install: z.strictObject({ disk: DevicePath, image: ImageRef, wipe: z.boolean(), extraKernelArgs: z.array(KernelArg).optional() }),
  features: z.strictObject({ rbac: z.boolean(), stableHostname: z.boolean(), apidCheckExtKeyUsage: z.boolean(), diskQuotaSupport: z.boolean() }),
});

const ClusterCommon = {
  id: Secret32,
  secret: Secret32,
  controlPlane: z.strictObject({ endpoint: Endpoint }),
  clusterName: DnsLabel,
  network: z.strictObject({ dnsDomain: DnsName, podSubnets: z.array(Cidr).min(1), serviceSubnets: z.array(Cidr).min(1) }),
  token: Token,
  discovery: z.strictObject({ enabled: z.boolean() }),
};

const WorkerClusterSchema = z.strictObject({ ...ClusterCommon, ca: CaWithoutKey });
const ControlPlaneClusterSchema = z.strictObject({
  ...ClusterCommon,
  ca: CaWithKey,
  secretboxEncryptionSecret: Secret32,
  aggregatorCA: CaWithKey,
  serviceAccount: z.strictObject({ key: PrivateKey }),
  apiServer: z.strictObject({ image: Image("registry.k8s.io/kube-apiserver"), certSANs: z.array(z.string()) }),
  controllerManager: z.strictObject({ image: Image("registry.k8s.io/kube-controller-manager") }),
  proxy: z.strictObject({ image: Image("registry.k8s.io/kube-proxy") }),
  scheduler: z.strictObject({ image: Image("registry.k8s.io/kube-scheduler") }),
  etcd: z.strictObject({ ca: CaWithKey }),
});

/** The documented v1alpha1 fields this generator emits, per role (strict: anything else is a bug here). */
export const TalosConfigSchema = z.union([
  z.strictObject({
    version: z.literal("v1alpha1"),
    debug: z.boolean(),
    persist: z.boolean(),
    machine: MachineSchema.extend({ type: z.literal("controlplane"), ca: CaWithKey }),
    cluster: ControlPlaneClusterSchema,
  }),
  z.strictObject({
    version: z.literal("v1alpha1"),
    debug: z.boolean(),
    persist: z.boolean(),
    machine: MachineSchema.extend({ type: z.literal("worker"), ca: CaWithoutKey }),
    cluster: WorkerClusterSchema,
  }),
]);
export type TalosConfig = z.infer<typeof TalosConfigSchema>;

/**
 * The machine config of one node. Invalid inputs are a DomainError
 * `talos_config_invalid` naming every failing field (`details.errors`).
 */
export function talosMachineConfig(input: TalosConfigInput): TalosConfig | DomainError {
  const parsed = TalosConfigInputSchema.safeParse(input);
  if (!parsed.success) {
    const errors = parsed.error.issues.map((i) => ({ path: i.path.map(String).join("."), message: i.message }));
    return new DomainError("talos_config_invalid", `the Talos config inputs are not valid: ${errors.map((e) => e.path || "(input)").join(", ")}`, { errors });
  }
  const { role, hostname, cluster, install, secrets } = parsed.data;
  const k8s = parsed.data.kubernetesVersion.startsWith("v") ? parsed.data.kubernetesVersion : `v${parsed.data.kubernetesVersion}`;
  const controlplane = role === "controlplane";

  const machine = {
    type: role,
    token: secrets.trustdinfo.token,
    ca: controlplane ? { crt: secrets.certs.os.crt, key: secrets.certs.os.key } : { crt: secrets.certs.os.crt, key: "" as const },
    certSANs: [],
    kubelet: { image: `ghcr.io/siderolabs/kubelet:${k8s}`, defaultRuntimeSeccompProfileEnabled: true, disableManifestsDirectory: true },
    network: { hostname },
    install: {
      disk: install.disk,
      image: install.image,
      wipe: install.wipe,
      ...(install.extraKernelArgs.length > 0 ? { extraKernelArgs: [...install.extraKernelArgs] } : {}),
    },
    features: { rbac: true, stableHostname: true, apidCheckExtKeyUsage: true, diskQuotaSupport: true },
  };
  const common = {
    id: secrets.cluster.id,
    secret: secrets.cluster.secret,
    controlPlane: { endpoint: cluster.endpoint },
    clusterName: cluster.name,
    network: { dnsDomain: cluster.dnsDomain, podSubnets: [...cluster.podSubnets], serviceSubnets: [...cluster.serviceSubnets] },
    token: secrets.secrets.bootstraptoken,
    discovery: { enabled: true },
  };

  if (controlplane) {
    return {
      version: "v1alpha1",
      debug: false,
      persist: true,
      machine: { ...machine, type: "controlplane", ca: { crt: secrets.certs.os.crt, key: secrets.certs.os.key } },
      cluster: {
        ...common,
        ca: { crt: secrets.certs.k8s.crt, key: secrets.certs.k8s.key },
        secretboxEncryptionSecret: secrets.secrets.secretboxencryptionsecret,
        aggregatorCA: { crt: secrets.certs.k8saggregator.crt, key: secrets.certs.k8saggregator.key },
        serviceAccount: { key: secrets.certs.k8sserviceaccount.key },
        apiServer: { image: `registry.k8s.io/kube-apiserver:${k8s}`, certSANs: [endpointHost(cluster.endpoint)] },
        controllerManager: { image: `registry.k8s.io/kube-controller-manager:${k8s}` },
        proxy: { image: `registry.k8s.io/kube-proxy:${k8s}` },
        scheduler: { image: `registry.k8s.io/kube-scheduler:${k8s}` },
        etcd: { ca: { crt: secrets.certs.etcd.crt, key: secrets.certs.etcd.key } },
      },
    };
  }
  return {
    version: "v1alpha1",
    debug: false,
    persist: true,
    machine: { ...machine, type: "worker", ca: { crt: secrets.certs.os.crt, key: "" } },
    cluster: { ...common, ca: { crt: secrets.certs.k8s.crt, key: "" } },
  };
}

/** The host part of the endpoint (for the API server's certificate SANs). */
function endpointHost(endpoint: string): string {
  const authority = endpoint.replace(/^https:\/\//, "").replace(/\/$/, "");
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(authority);
  if (bracketed) return bracketed[1]!;
  return authority.replace(/:\d+$/, "");
}
