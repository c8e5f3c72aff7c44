import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { parse, stringify } from "yaml";
import { DomainError } from "../../../../domain/shared/errors.ts";
import {
  TALOS_TOKEN_PATTERN,
  TalosConfigSchema,
  TalosSecretsSchema,
  talosMachineConfig,
  type TalosConfig,
  type TalosConfigInput,
} from "../../../../domain/maskin/talos-config.ts";
import { TEST_TALOS_SECRETS } from "../../../integration/boot/fixtures/talos-secrets.ts";

const input = (over: Partial<TalosConfigInput> = {}): TalosConfigInput => ({
  role: "worker",
  hostname: "node-01",
  cluster: { name: "p1-prod", endpoint: "https://10.0.0.10:6443" },
  install: { disk: "/dev/sda", image: "ghcr.io/siderolabs/installer:v1.9.5", wipe: false },
  kubernetesVersion: "1.32.3",
  secrets: TEST_TALOS_SECRETS,
  ...over,
});

function generate(over: Partial<TalosConfigInput> = {}): TalosConfig {
  const config = talosMachineConfig(input(over));
  if (config instanceof DomainError) throw new Error(`unexpected ${config.code}: ${config.message} ${JSON.stringify(config.details)}`);
  return config;
}

/** Every string anywhere in the value. */
function strings(value: unknown): string[] {
  if (typeof value === "string") return [value];
  if (Array.isArray(value)) return value.flatMap(strings);
  if (value && typeof value === "object") return Object.values(value).flatMap(strings);
  return [];
}
const decoded = (s: string) => Buffer.from(s, "base64").toString("latin1");
const privateKeysIn = (config: TalosConfig) => strings(config).filter((s) => /PRIVATE KEY-----/.test(decoded(s)));

describe("talosMachineConfig", () => {
  it("the fixture is a valid talosctl secrets bundle", () => {
    expect(TalosSecretsSchema.safeParse(TEST_TALOS_SECRETS).success).toBe(true);
  });

  it("a worker's config has the documented v1alpha1 fields, from the inputs, and no private key", () => {
    const config = generate();
    expect(TalosConfigSchema.safeParse(config).error?.issues ?? []).toEqual([]);
    expect(config.version).toBe("v1alpha1");
    expect(config.machine.type).toBe("worker");
    expect(config.machine.token).toBe(TEST_TALOS_SECRETS.trustdinfo.token);
    expect(config.machine.token).toMatch(TALOS_TOKEN_PATTERN);
    expect(config.machine.ca).toEqual({ crt: TEST_TALOS_SECRETS.certs.os.crt, key: "" });
    expect(config.machine.install).toEqual({ disk: "/dev/sda", image: "ghcr.io/siderolabs/installer:v1.9.5", wipe: false });
    expect(config.machine.network.hostname).toBe("node-01");
    expect(config.machine.kubelet.image).toBe("ghcr.io/siderolabs/kubelet:v1.32.3");
    expect(config.cluster.controlPlane.endpoint).toBe("https://10.0.0.10:6443");
    expect(config.cluster.clusterName).toBe("p1-prod");
    expect(config.cluster.network).toEqual({ dnsDomain: "cluster.local", podSubnets: ["10.244.0.0/16"], serviceSubnets: ["10.96.0.0/12"] });
    expect(config.cluster.token).toBe(TEST_TALOS_SECRETS.secrets.bootstraptoken);
    expect(config.cluster.ca).toEqual({ crt: TEST_TALOS_SECRETS.certs.k8s.crt, key: "" });
    expect(config.cluster.id).toBe(TEST_TALOS_SECRETS.cluster.id);
    expect(config.cluster.secret).toBe(TEST_TALOS_SECRETS.cluster.secret);
    expect(config.cluster).not.toHaveProperty("etcd");
    expect(config.cluster).not.toHaveProperty("secretboxEncryptionSecret");
    expect(config.cluster).not.toHaveProperty("serviceAccount");
    expect(config.cluster).not.toHaveProperty("aggregatorCA");
    expect(privateKeysIn(config)).toEqual([]);
  });

  it("a control plane node gets the CA keys, etcd, the aggregator, service accounts and secretbox", () => {
    const config = generate({ role: "controlplane", hostname: "cp-1" });
    expect(TalosConfigSchema.safeParse(config).error?.issues ?? []).toEqual([]);
    if (config.machine.type !== "controlplane" || !("etcd" in config.cluster)) throw new Error("not a control plane config");
    const { certs, secrets } = TEST_TALOS_SECRETS;
    expect(config.machine.ca).toEqual(certs.os);
    expect(config.cluster.ca).toEqual(certs.k8s);
    expect(config.cluster.etcd.ca).toEqual(certs.etcd);
    expect(config.cluster.aggregatorCA).toEqual(certs.k8saggregator);
    expect(config.cluster.serviceAccount.key).toBe(certs.k8sserviceaccount.key);
    expect(config.cluster.secretboxEncryptionSecret).toBe(secrets.secretboxencryptionsecret);
    expect(config.cluster.apiServer).toEqual({ image: "registry.k8s.io/kube-apiserver:v1.32.3", certSANs: ["10.0.0.10"] });
    expect(config.cluster.controllerManager.image).toBe("registry.k8s.io/kube-controller-manager:v1.32.3");
    expect(config.cluster.scheduler.image).toBe("registry.k8s.io/kube-scheduler:v1.32.3");
    expect(config.cluster.proxy.image).toBe("registry.k8s.io/kube-proxy:v1.32.3");
    expect(privateKeysIn(config).sort()).toEqual(
      [certs.os.key, certs.k8s.key, certs.etcd.key, certs.k8saggregator.key, certs.k8sserviceaccount.key].sort(),
    );
  });

  it("is pure: the same inputs give the same config, and every secret in it comes from the inputs", () => {
    for (const role of ["worker", "controlplane"] as const) {
      expect(generate({ role })).toEqual(generate({ role }));
      const inputSecrets = new Set(strings(TEST_TALOS_SECRETS));
      const secretLooking = strings(generate({ role })).filter((s) => TALOS_TOKEN_PATTERN.test(s) || (s.length >= 40 && /^[A-Za-z0-9+/]+=*$/.test(s)));
      expect(secretLooking.length).toBeGreaterThanOrEqual(role === "worker" ? 6 : 11);
      for (const s of secretLooking) expect(inputSecrets.has(s), `${s.slice(0, 20)}… is not from the inputs`).toBe(true);
    }
  });

  it("survives YAML: the document Talos reads parses back to the same config", () => {
    for (const role of ["worker", "controlplane"] as const) {
      const config = generate({ role, install: { disk: "/dev/nvme0n1", image: "ghcr.io/siderolabs/installer:v1.9.5", wipe: true, extraKernelArgs: ["console=ttyS0", "net.ifnames=0"] } });
      const text = stringify(config);
      expect(text.startsWith("version: v1alpha1\n")).toBe(true);
      const back = parse(text) as unknown;
      expect(back).toEqual(config);
      expect(TalosConfigSchema.safeParse(back).success).toBe(true);
      expect(config.machine.install).toEqual({ disk: "/dev/nvme0n1", image: "ghcr.io/siderolabs/installer:v1.9.5", wipe: true, extraKernelArgs: ["console=ttyS0", "net.ifnames=0"] });
    }
  });

  it("takes the cluster network and an IPv6 or DNS endpoint from the inputs", () => {
    const config = generate({
      role: "controlplane",
      cluster: { name: "c", endpoint: "https://[fd00::10]:6443", dnsDomain: "k8s.internal", podSubnets: ["10.32.0.0/16", "fd01::/48"], serviceSubnets: ["10.33.0.0/16"] },
    });
    expect(config.cluster.network).toEqual({ dnsDomain: "k8s.internal", podSubnets: ["10.32.0.0/16", "fd01::/48"], serviceSubnets: ["10.33.0.0/16"] });
    if (!("apiServer" in config.cluster)) throw new Error("not a control plane config");
    expect(config.cluster.apiServer.certSANs).toEqual(["fd00::10"]);
    expect(generate({ role: "controlplane", cluster: { name: "c", endpoint: "https://api.c.example:6443" } }).cluster).toMatchObject({
      apiServer: { certSANs: ["api.c.example"] },
    });
  });

  it("refuses invalid inputs with every failing field, never a half-made config", () => {
    const bad = talosMachineConfig({
      ...input(),
      hostname: "Node_01",
      cluster: { name: "c", endpoint: "http://10.0.0.10:6443" },
      install: { disk: "sda", image: "ghcr.io/siderolabs/installer:v1.9.5", wipe: false },
      secrets: { ...TEST_TALOS_SECRETS, trustdinfo: { token: "not-a-token" } },
    });
    expect(bad).toBeInstanceOf(DomainError);
    const error = bad as DomainError;
    expect(error.code).toBe("talos_config_invalid");
    const paths = (error.details.errors as Array<{ path: string }>).map((e) => e.path).sort();
    expect(paths).toEqual(["cluster.endpoint", "hostname", "install.disk", "secrets.trustdinfo.token"]);
    // A certificate that is not base64 PEM is refused too.
    const notPem = talosMachineConfig(input({ secrets: { ...TEST_TALOS_SECRETS, certs: { ...TEST_TALOS_SECRETS.certs, os: { crt: "bm90IGEgY2VydA==", key: TEST_TALOS_SECRETS.certs.os.key } } } }));
    expect((notPem as DomainError).details.errors).toEqual([expect.objectContaining({ path: "secrets.certs.os.crt" })]);
  });

  it("every valid hostname and cluster name gives a config that matches the documented schema (property)", () => {
    const label = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?$/);
    fc.assert(
      fc.property(label, label, fc.constantFrom("worker" as const, "controlplane" as const), fc.boolean(), (hostname, name, role, wipe) => {
        const config = generate({ role, hostname, cluster: { name, endpoint: "https://10.0.0.10:6443" }, install: { disk: "/dev/sda", image: "ghcr.io/siderolabs/installer:v1.9.5", wipe } });
        expect(TalosConfigSchema.safeParse(config).success).toBe(true);
        expect(config.machine.network.hostname).toBe(hostname);
        expect(config.cluster.clusterName).toBe(name);
        expect(config.machine.install.wipe).toBe(wipe);
        expect(privateKeysIn(config).length).toBe(role === "worker" ? 0 : 5);
      }),
      { numRuns: 100 },
    );
  });
});
