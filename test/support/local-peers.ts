import { createSocket } from "node:dgram";
import { accessSync, constants as fsConstants } from "node:fs";
import { readdir, readFile, readlink } from "node:fs/promises";
import { delimiter, join } from "node:path";

/**
 * Helpers for tests that start real peers on this machine (simulated BMCs,
 * the lab's QEMU server): free UDP ports, whether a process really holds its
 * port, and whether a tool is installed.
 */

/** `count` UDP ports on 127.0.0.1 that were free a moment ago (bound at once, then released). */
export async function freeUdpPorts(count: number): Promise<number[]> {
  const sockets = await Promise.all(
    Array.from({ length: count }, () => {
      const socket = createSocket("udp4");
      return new Promise<{ port: number; close: () => void }>((resolve, reject) => {
        socket.once("error", reject);
        socket.bind(0, "127.0.0.1", () => resolve({ port: socket.address().port, close: () => socket.close() }));
      });
    }),
  );
  for (const s of sockets) s.close();
  return sockets.map((s) => s.port);
}

/**
 * Whether process `pid` itself holds a UDP socket bound to 127.0.0.1:port
 * (the socket's inode from /proc/net/udp among the process's open fds), so a
 * stranger that took the port is not mistaken for our peer.
 */
export async function udpBoundBy(pid: number, port: number): Promise<boolean> {
  const table = await readFile("/proc/net/udp", "utf8");
  const local = `0100007F:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  const inodes = table
    .split("\n")
    .map((line) => line.trim().split(/\s+/))
    .filter((cols) => cols[1] === local)
    .map((cols) => cols[9]);
  if (inodes.length === 0) return false;
  const fds = await readdir(`/proc/${pid}/fd`).catch(() => [] as string[]);
  for (const fd of fds) {
    const link = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => "");
    if (inodes.some((inode) => link === `socket:[${inode}]`)) return true;
  }
  return false;
}

/** Whether `tool` is an executable on PATH. */
export function onPath(tool: string): boolean {
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    if (!dir) continue;
    try {
      accessSync(join(dir, tool), fsConstants.X_OK);
      return true;
    } catch {
      // not here
    }
  }
  return false;
}
