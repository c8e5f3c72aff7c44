import { execFile as execFileCb } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { promisify } from "node:util";
import { QemuRuntime } from "../../../../adapters/qemu/runtime.ts";

const execFile = promisify(execFileCb);

export const QEMU_TEST_INSTALL_HINT = "apt-get install --no-install-recommends qemu-system-x86 qemu-utils genisoimage";

/** Fails (never skips) with the apt-get line when a tool is missing. */
export async function assertQemuInstalled(): Promise<void> {
  const missing: string[] = [];
  for (const [tool, args] of [["qemu-system-x86_64", ["--version"]], ["qemu-img", ["--version"]], ["genisoimage", ["-version"]]] as const) {
    await execFile(tool, [...args]).catch(() => missing.push(tool));
  }
  if (missing.length > 0) throw new Error(`real QEMU tests need ${missing.join(", ")}: ${QEMU_TEST_INSTALL_HINT}`);
}

/** A runtime on a fresh short run root under /tmp (socket paths must stay under 108 bytes). */
export async function testRuntime(prefix: string): Promise<{ runtime: QemuRuntime; root: string; cleanup: () => Promise<void> }> {
  const root = await mkdtemp(`/tmp/dvq-${prefix}-`);
  const runtime = new QemuRuntime({ runRoot: `${root}/run` });
  return {
    runtime,
    root,
    cleanup: async () => {
      for (const vm of await runtime.list()) await runtime.kill(vm.vmId).catch(() => undefined);
      await rm(root, { recursive: true, force: true });
    },
  };
}

/** Polls `check` every 50 ms until it returns true or `timeoutMs` passes (bounded waits, never fixed sleeps). */
export async function until(check: () => Promise<boolean> | boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return true;
    if (Date.now() >= deadline) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
}
