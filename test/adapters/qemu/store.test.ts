import { createHash } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ImageImportError, ImageStore } from "../../../adapters/qemu/store.ts";

/** The image store's URL import (adapters/qemu/store.ts) against a local HTTP server. */

let server: Server;
let base: string;
let root: string;
let requests = 0;
const kernel = Buffer.from("not really a kernel, but bytes with a digest\n".repeat(1000));
const initrd = Buffer.from("an initrd\n".repeat(500));
const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

beforeAll(async () => {
  root = await mkdtemp("/tmp/dvq-store-");
  server = createServer((req, res) => {
    requests++;
    if (req.url === "/stall") {
      res.writeHead(200, { "content-type": "application/octet-stream" });
      res.write(kernel.subarray(0, 100)); // and never ends
      return;
    }
    const body = req.url === "/kernel" ? kernel : req.url === "/initrd" ? initrd : null;
    if (!body) {
      res.writeHead(404).end("no");
      return;
    }
    res.writeHead(200, { "content-type": "application/octet-stream" }).end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server?.closeAllConnections();
  await new Promise((resolve) => server?.close(resolve));
  if (root) await rm(root, { recursive: true, force: true });
});

const image = (version: string, kernelDigest = sha(kernel)) => ({
  name: "lab",
  version,
  format: "kernel+initrd" as const,
  digest: sha(Buffer.concat([kernel, initrd])),
  source: { kind: "url" as const, url: `${base}/kernel` },
  boot: {
    kernel: { source: { kind: "url" as const, url: `${base}/kernel` }, digest: kernelDigest },
    initrd: { source: { kind: "url" as const, url: `${base}/initrd` }, digest: sha(initrd) },
    cmdline: "console=ttyS0",
  },
});

describe("ImageStore URL import", () => {
  it("fetches both parts once, even for two imports at the same time, checked and renamed into place", async () => {
    const store = new ImageStore({ root: join(root, "store") });
    requests = 0;
    const [a, b] = await Promise.all([store.importImage(image("1")), store.importImage(image("1"))]);
    expect([a.imported, b.imported].sort()).toEqual([false, true]);
    expect(requests).toBe(2);
    expect(a.image).toEqual({ format: "kernel+initrd", kernel: join(root, "store", "images", "lab", "1", "kernel"), initrd: join(root, "store", "images", "lab", "1", "initrd"), cmdline: "console=ttyS0" });
    expect(await readFile(join(root, "store", "images", "lab", "1", "kernel"))).toEqual(kernel);
    // A new store object on the same directory finds it imported (no fetch).
    const again = await new ImageStore({ root: join(root, "store") }).importImage(image("1"));
    expect(again.imported).toBe(false);
    expect(requests).toBe(2);
  });

  it("a digest mismatch or an HTTP error fails with its code and leaves no version nor temporary directory", async () => {
    const store = new ImageStore({ root: join(root, "store") });
    const mismatch = await store.importImage(image("2", "f".repeat(64))).catch((e: unknown) => e);
    expect(mismatch).toBeInstanceOf(ImageImportError);
    expect((mismatch as ImageImportError).code).toBe("image_digest_mismatch");

    const broken = { ...image("3"), boot: { ...image("3").boot, initrd: { source: { kind: "url" as const, url: `${base}/missing` }, digest: sha(initrd) } } };
    const unavailable = await store.importImage(broken).catch((e: unknown) => e);
    expect((unavailable as ImageImportError).code).toBe("image_source_unavailable");
    expect((unavailable as Error).message).toMatch(/HTTP 404/);

    const down = { ...image("4"), boot: { ...image("4").boot, kernel: { source: { kind: "url" as const, url: "http://127.0.0.1:9/kernel" }, digest: sha(kernel) } } };
    expect(((await store.importImage(down).catch((e: unknown) => e)) as ImageImportError).code).toBe("image_source_unavailable");

    expect((await readdir(join(root, "store", "images", "lab"))).sort()).toEqual(["1"]);
    expect(await store.imported("lab", "2")).toBeNull();
  });

  it("a download the task's signal aborts stops there: not an import error, nothing imported", async () => {
    const store = new ImageStore({ root: join(root, "store") });
    const stalled = { ...image("5"), boot: { ...image("5").boot, kernel: { source: { kind: "url" as const, url: `${base}/stall` }, digest: sha(kernel) } } };
    const aborted = await store.importImage(stalled, { signal: AbortSignal.timeout(300) }).catch((e: unknown) => e);
    expect(aborted).toBeInstanceOf(Error);
    expect(aborted).not.toBeInstanceOf(ImageImportError);
    expect((await readdir(join(root, "store", "images", "lab"))).sort()).toEqual(["1"]);
  });
});
