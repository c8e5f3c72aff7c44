import { randomUUID } from "node:crypto";
import type { Command } from "commander";
import { formatJson, render, type Column } from "../core/output.ts";
import { listAll, type Resource } from "../core/resources.ts";
import type { Runtime } from "../core/runtime.ts";
import { watch } from "./watch-task.ts";
import { positiveInt, written } from "./tenancy.ts";

/**
 * `dv task list|get|watch|cancel|retry`: long operations. `watch` follows a
 * task until it ends (cli/core/wait.ts) and exits 0 when it succeeded, 6 when
 * it failed, 7 when it was cancelled, printing why.
 */
const TASK_COLUMNS: Column<Resource>[] = [
  { header: "id", value: (t) => t.id },
  { header: "kind", value: (t) => t.kind },
  { header: "status", value: (t) => t.status },
  { header: "step", value: (t) => stepOf(t) },
  { header: "resource", value: (t) => { const r = t.resource as { type?: string; id?: string } | undefined; return r ? `${r.type}/${r.id}` : undefined; } },
  { header: "tenant", value: (t) => t.tenantId },
  { header: "project", value: (t) => t.projectId },
  { header: "title", value: (t) => t.title },
];

function stepOf(task: Resource): string | undefined {
  const steps = Array.isArray(task.steps) ? (task.steps as Array<{ name: string }>) : [];
  const index = steps.findIndex((s) => s.name === task.currentStep);
  if (index < 0) return undefined;
  return `${index + 1}/${steps.length} ${String(task.currentStep)}`;
}

const path = (taskId: string) => `/v1/tasks/${encodeURIComponent(taskId)}`;

export function registerTaskCommands(program: Command, runtime: Runtime): void {
  const task = program.command("task").summary("tasks").description("tasks: long operations, their steps, and how they ended");
  const show = (command: Command, value: Resource) => render(runtime.io, runtime.format(command), value, { rows: [value], columns: TASK_COLUMNS });

  task
    .command("list")
    .description("list the tasks you can see")
    .option("--status <status>", "pending, running, blocked, succeeded, failed or cancelled")
    .option("--tenant <id>", "only this tenant's")
    .option("--project <id>", "only this project's")
    .option("--env <id>", "only this environment's")
    .option("--resource <type[:id]>", "only tasks about this resource (type)")
    .option("--limit <n>", "at most this many", positiveInt)
    .action(async (options: { status?: string; tenant?: string; project?: string; env?: string; resource?: string; limit?: number }, command: Command) => {
      const client = await runtime.client(command);
      const items = await listAll(client, "/v1/tasks", {
        status: options.status, tenantId: options.tenant, projectId: options.project, environmentId: options.env, resource: options.resource,
      }, options.limit);
      render(runtime.io, runtime.format(command), items, { rows: items, columns: TASK_COLUMNS, empty: "No tasks." });
    });

  task
    .command("get")
    .description("show one task (with --output json: its steps, block and failure)")
    .argument("<task>", "task id")
    .action(async (taskId: string, _options, command: Command) => {
      show(command, await (await runtime.client(command)).get<Resource>(path(taskId)));
    });

  task
    .command("watch")
    .description("follow a task until it ends: exit 0 succeeded, 6 failed, 7 cancelled")
    .argument("<task>", "task id")
    .action(async (taskId: string, _options, command: Command) => {
      await watch(runtime, command, taskId);
    });

  task
    .command("cancel")
    .description("ask a task to stop")
    .argument("<task>", "task id")
    .option("--reason <text>", "why (kept in the task's history)")
    .option("--wait", "then follow it until it ends")
    .action(async (taskId: string, options: { reason?: string; wait?: boolean }, command: Command) => {
      const client = await runtime.client(command);
      const response = await client.request("POST", `${path(taskId)}/cancel`, {
        body: options.reason ? { reason: options.reason } : {},
        headers: { "idempotency-key": randomUUID() },
      });
      const value = await written(client, response);
      if (options.wait) return watch(runtime, command, taskId);
      show(command, value);
    });

  task
    .command("retry")
    .description("run a failed task again from its failed step")
    .argument("<task>", "task id")
    .option("--deadline <time>", "ISO 8601; default: now + the task's original duration")
    .option("--wait", "then follow it until it ends")
    .action(async (taskId: string, options: { deadline?: string; wait?: boolean }, command: Command) => {
      const client = await runtime.client(command);
      const response = await client.request("POST", `${path(taskId)}/retry`, {
        body: options.deadline ? { deadline: options.deadline } : {},
        headers: { "idempotency-key": randomUUID() },
      });
      const value = await written(client, response);
      if (options.wait) return watch(runtime, command, taskId);
      show(command, value);
    });
}
