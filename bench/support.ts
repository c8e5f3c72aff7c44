import { createRequire } from "node:module";
import type { FastifyInstance } from "fastify";
import pg from "pg";
import type { AuthenticatedActor } from "../api/auth/types.ts";
import { createKysely, createPool } from "../adapters/postgres/connection.ts";
import { migrateToLatest } from "../migrations/index.ts";

export interface BenchResult {
  readonly name: string;
  readonly value: number;
  readonly unit: string;
  /** null for reference figures (pgbench) that have no target of their own. */
  readonly target: number | null;
  /** How the target compares: higher or lower is better. */
  readonly better?: "higher" | "lower";
  readonly note?: string;
}

export const ADMIN_URL = process.env.BENCH_DATABASE_ADMIN_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";

export function urlFor(database: string): string {
  const url = new URL(ADMIN_URL);
  url.pathname = `/${database}`;
  return url.toString();
}

/** A fresh, migrated database; benchmarks never share state with each other or with tests. */
export async function freshDatabase(name: string, options: { migrate?: boolean } = {}): Promise<string> {
  const admin = new pg.Client({ connectionString: ADMIN_URL });
  await admin.connect();
  try {
    await admin.query(`drop database if exists ${name} with (force)`);
    await admin.query(`create database ${name}`);
  } finally {
    await admin.end();
  }
  const url = urlFor(name);
  if (options.migrate !== false) {
    const db = createKysely<unknown>(createPool(url, { max: 1 }));
    try {
      await migrateToLatest(db);
    } finally {
      await db.destroy();
    }
  }
  return url;
}

export async function dropDatabase(name: string): Promise<void> {
  const admin = new pg.Client({ connectionString: ADMIN_URL });
  await admin.connect();
  try {
    await admin.query(`drop database if exists ${name} with (force)`);
  } finally {
    await admin.end();
  }
}

export async function timed<T>(work: () => Promise<T>): Promise<{ result: T; seconds: number }> {
  const started = process.hrtime.bigint();
  const result = await work();
  return { result, seconds: Number(process.hrtime.bigint() - started) / 1e9 };
}

export function log(message: string): void {
  process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${message}\n`);
}

export function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)] ?? 0;
}

export function round(value: number): number {
  return Math.round(value * 10) / 10;
}

/** The slice of autocannon's API the benchmarks use (the package ships no types). */
export interface AutocannonResult {
  requests: { average: number; total: number };
  latency: { p50: number; p99: number; average: number };
  non2xx: number;
  errors: number;
  timeouts: number;
}
export type Autocannon = (options: {
  url: string;
  connections: number;
  duration: number;
  method?: "GET" | "POST";
  headers?: Record<string, string>;
  body?: string;
}) => Promise<AutocannonResult>;
export const autocannon = createRequire(import.meta.url)("autocannon") as Autocannon;

/** Authentication for benchmarks: every request is this actor (token checks are not what is measured). */
export function fixedActorAuth(actor: AuthenticatedActor): { register(app: FastifyInstance): Promise<void> } {
  return {
    async register(server) {
      server.decorateRequest("actor", null);
      server.addHook("onRequest", async (request) => {
        request.actor = actor;
      });
    },
  };
}
