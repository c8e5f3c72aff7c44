import type pg from "pg";
import type { TimerKind, TimerSpec } from "./engine.ts";

/** The runtime's tables in schema `sagas` (migrations/0007_sagas.ts). */

export interface DueTimer {
  readonly taskId: string;
  readonly kind: TimerKind;
  readonly key: string;
  readonly dueAt: Date;
  readonly payload: Record<string, unknown>;
  readonly attempts: number;
}

export interface OutstandingWork {
  readonly requestId: string;
  readonly taskId: string;
  readonly step: string;
  readonly service: string;
  readonly action: string;
  readonly datacenter: string;
  /** The one worker asked (a hypervisor host), null for any worker of the service in the datacenter. */
  readonly target: string | null;
  readonly requestedAt: Date;
  readonly blocked: boolean;
}

export async function scheduleTimer(pool: pg.Pool, taskId: string, timer: TimerSpec): Promise<void> {
  await pool.query(
    `insert into sagas.timers (task_id, kind, key, due_at, payload) values ($1, $2, $3, $4, $5)
     on conflict (task_id, kind, key) do update set due_at = excluded.due_at, payload = excluded.payload, attempts = 0, last_error = null`,
    [taskId, timer.kind, timer.key, new Date(timer.dueAt), JSON.stringify(timer.payload)],
  );
}

export async function forgetTask(pool: pg.Pool, taskId: string): Promise<void> {
  // One statement (a data-modifying WITH runs whether or not it is referenced): one round trip, one commit.
  await pool.query("with timers as (delete from sagas.timers where task_id = $1) delete from sagas.outstanding_work where task_id = $1", [taskId]);
}

/** Records a request as outstanding; `forget` (an answered request) is deleted in the same statement. */
export async function trackWork(pool: pg.Pool, work: Omit<OutstandingWork, "blocked">, forget?: string): Promise<void> {
  const values = [work.requestId, work.taskId, work.step, work.service, work.action, work.datacenter, work.requestedAt, work.target];
  const insert = `insert into sagas.outstanding_work (request_id, task_id, step, service, action, datacenter, requested_at, target)
     values ($1, $2, $3, $4, $5, $6, $7, $8) on conflict (request_id) do nothing`;
  if (forget === undefined || forget === work.requestId) await pool.query(insert, values);
  else await pool.query(`with answered as (delete from sagas.outstanding_work where request_id = $9) ${insert}`, [...values, forget]);
}

export async function forgetWork(pool: pg.Pool, requestId: string): Promise<void> {
  await pool.query("delete from sagas.outstanding_work where request_id = $1", [requestId]);
}

export async function listOutstandingWork(pool: pg.Pool): Promise<OutstandingWork[]> {
  const { rows } = await pool.query<{
    request_id: string;
    task_id: string;
    step: string;
    service: string;
    action: string;
    datacenter: string;
    target: string | null;
    requested_at: Date;
    blocked: boolean;
  }>("select request_id, task_id, step, service, action, datacenter, target, requested_at, blocked from sagas.outstanding_work order by requested_at");
  return rows.map((r) => ({
    requestId: r.request_id,
    taskId: r.task_id,
    step: r.step,
    service: r.service,
    action: r.action,
    datacenter: r.datacenter,
    target: r.target,
    requestedAt: r.requested_at,
    blocked: r.blocked,
  }));
}

export async function markBlocked(pool: pg.Pool, taskId: string, service: string, datacenter: string, target: string | null, blocked: boolean): Promise<void> {
  await pool.query(
    "update sagas.outstanding_work set blocked = $4 where task_id = $1 and service = $2 and datacenter = $3 and target is not distinct from $5",
    [taskId, service, datacenter, blocked, target],
  );
}

/**
 * Claims up to `limit` due timers (`for update skip locked`, so several
 * runtimes share the work), hands each to `fire`, and in the same
 * transaction deletes those whose command succeeded; a failed one is pushed
 * back by `retryDelayMs(attempts)` with its error. Returns how many fired.
 */
export async function fireDueTimers(
  pool: pg.Pool,
  now: Date,
  limit: number,
  fire: (timer: DueTimer) => Promise<void>,
  retryDelayMs: (attempts: number) => number,
  onError: (timer: DueTimer, error: unknown) => void,
): Promise<number> {
  const client = await pool.connect();
  let fired = 0;
  try {
    await client.query("begin");
    const { rows } = await client.query<{ task_id: string; kind: TimerKind; key: string; due_at: Date; payload: Record<string, unknown>; attempts: number }>(
      `select task_id, kind, key, due_at, payload, attempts from sagas.timers
       where due_at <= $1 order by due_at limit $2 for update skip locked`,
      [now, limit],
    );
    for (const row of rows) {
      const timer: DueTimer = { taskId: row.task_id, kind: row.kind, key: row.key, dueAt: row.due_at, payload: row.payload, attempts: row.attempts };
      try {
        await fire(timer);
        await client.query("delete from sagas.timers where task_id = $1 and kind = $2 and key = $3 and due_at = $4", [
          row.task_id,
          row.kind,
          row.key,
          row.due_at,
        ]);
        fired += 1;
      } catch (error) {
        onError(timer, error);
        await client.query(
          "update sagas.timers set due_at = $4, attempts = attempts + 1, last_error = $5 where task_id = $1 and kind = $2 and key = $3",
          [row.task_id, row.kind, row.key, new Date(now.getTime() + retryDelayMs(row.attempts + 1)), error instanceof Error ? error.message : String(error)],
        );
      }
    }
    await client.query("commit");
    return fired;
  } catch (error) {
    await client.query("rollback").catch(() => {});
    throw error;
  } finally {
    client.release();
  }
}
