import type { CommandStore } from "../../../commands/pipeline.ts";
import { executeTaskCommand } from "../../../commands/task/index.ts";
import type { TaskScope } from "../../../domain/task/index.ts";

/**
 * Drives one task through the Task aggregate the way a saga would
 * (executeTaskCommand on the real store), with a clock the test controls.
 */
export class TaskDriver {
  private minute = 0;
  constructor(
    private readonly store: CommandStore,
    readonly taskId: string,
    readonly scope: TaskScope,
    private readonly base = Date.UTC(2026, 3, 1, 12, 0),
  ) {}

  at(): string {
    return new Date(this.base + this.minute++ * 60_000).toISOString();
  }

  get envelopeScope() {
    return {
      tenantId: this.scope.tenantId,
      ...(this.scope.projectId ? { projectId: this.scope.projectId } : {}),
      ...(this.scope.environmentId ? { environmentId: this.scope.environmentId } : {}),
    };
  }

  run(command: Record<string, unknown>) {
    const at = (command.at as string | undefined) ?? this.at();
    return executeTaskCommand(
      this.store,
      { taskId: this.taskId, ...command, at },
      { actor: { kind: "system", id: "saga" }, correlationId: `test-${this.taskId}`, scope: this.envelopeScope, occurredAt: new Date(at) },
    );
  }

  create(steps: string[] = ["prepare", "create-prod", "finish"], extra: Record<string, unknown> = {}) {
    const at = this.at();
    return this.run({
      type: "CreateTask",
      kind: "sentral.test",
      title: `test task ${this.taskId}`,
      resource: { type: "project", id: this.scope.projectId ?? "none" },
      scope: this.scope,
      steps: steps.map((name) => ({ name, title: `Step ${name}` })),
      deadline: new Date(Date.parse(at) + 3_600_000).toISOString(),
      maxAttempts: 3,
      at,
      ...extra,
    });
  }

  start(step: string) {
    return this.run({ type: "StartStep", step });
  }
  requestWork(step: string) {
    return this.run({ type: "RequestWork", step, service: "sentral", action: "noop", datacenter: "dc1" });
  }
  progress(step: string, percent: number, message: string) {
    return this.run({ type: "ReportProgress", step, percent, message });
  }
  complete(step: string) {
    return this.run({ type: "CompleteStep", step });
  }
  attemptFailed(step: string, requestId: string, transient = true, message = "worker said no") {
    return this.run({ type: "RecordAttemptFailure", step, requestId, code: "worker_error", message, transient, retryAt: this.at() });
  }
  block(dependency: string, reason: string) {
    return this.run({ type: "BlockTask", dependency, kind: "hard", reason });
  }
  unblock(dependency: string) {
    return this.run({ type: "UnblockTask", dependency });
  }
  succeed() {
    return this.run({ type: "SucceedTask" });
  }
  fail(reason = "it broke") {
    return this.run({ type: "FailTask", code: "broken", reason });
  }

  /** All steps completed and the task succeeded. */
  async runToSuccess(steps: string[] = ["prepare", "create-prod", "finish"]) {
    for (const step of steps) {
      await this.start(step);
      await this.progress(step, 50, `half of ${step}`);
      await this.complete(step);
    }
    return this.succeed();
  }
}
