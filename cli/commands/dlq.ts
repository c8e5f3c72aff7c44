import { randomUUID } from "node:crypto";
import type { Command } from "commander";
import { formatAge, formatKeyValues, formatJson, render, type Column } from "../core/output.ts";
import { listAll, type Resource } from "../core/resources.ts";
import type { Runtime } from "../core/runtime.ts";
import { positiveInt } from "./tenancy.ts";

/**
 * `dv dlq list|show|replay`: the dead-letter queue (DV_DLQ), for operators.
 * Messages the saga runtime or a worker gave up on, with where they came
 * from and why; `replay` publishes one again to its original subject, once
 * (a second replay publishes nothing). Reading needs platform-admin or a
 * platform auditor; replaying needs platform-admin.
 */
const COLUMNS: Column<Resource>[] = [
  { header: "seq", value: (d) => d.sequence },
  { header: "subject", value: (d) => d.originalSubject },
  { header: "deliveries", value: (d) => d.deliveryCount },
  { header: "task", value: (d) => d.taskId },
  { header: "age", value: (d) => formatAge(d.deadLetteredAt) },
  { header: "replayed", value: (d) => (d.replay ? formatAge((d.replay as { replayedAt?: string }).replayedAt) : "no") },
  { header: "error", value: (d) => d.error },
];

const path = (sequence: number) => `/v1/dlq/${sequence}`;

export function registerDlqCommands(program: Command, runtime: Runtime): void {
  const dlq = program
    .command("dlq")
    .summary("dead-letter queue")
    .description("the dead-letter queue: messages given up on after repeated failures; show them, replay them once");

  dlq
    .command("list")
    .description("list dead letters, oldest first")
    .option("--limit <n>", "at most this many", positiveInt)
    .action(async (options: { limit?: number }, command: Command) => {
      const client = await runtime.client(command);
      const items = await listAll(client, "/v1/dlq", {}, options.limit);
      render(runtime.io, runtime.format(command), items, { rows: items, columns: COLUMNS, empty: "The dead-letter queue is empty." });
    });

  dlq
    .command("show")
    .description("one dead letter: where it came from, why it died, its headers and body")
    .argument("<seq>", "its sequence in the dead-letter queue", positiveInt)
    .action(async (sequence: number, _options, command: Command) => {
      const letter = await (await runtime.client(command)).get<Resource>(path(sequence));
      if (runtime.format(command) === "json") return runtime.io.out(formatJson(letter));
      runtime.io.out(formatLetter(letter));
    });

  dlq
    .command("replay")
    .description("publish a dead letter again to its original subject (once: replaying it again publishes nothing)")
    .argument("<seq>", "its sequence in the dead-letter queue", positiveInt)
    .action(async (sequence: number, _options, command: Command) => {
      const client = await runtime.client(command);
      // Safe to retry: the server replays a dead letter at most once.
      const response = await client.request<Resource>("POST", `${path(sequence)}/replay`, { headers: { "idempotency-key": randomUUID() } });
      const outcome = response.body;
      const replay = (outcome.replay ?? {}) as Record<string, unknown>;
      const letter = (outcome.deadLetter ?? {}) as Record<string, unknown>;
      if (!outcome.published) runtime.io.err(`dead letter ${sequence} was replayed already (${String(replay.replayedAt)}); nothing was published now\n`);
      if (runtime.format(command) === "json") return runtime.io.out(formatJson(outcome));
      runtime.io.out(
        formatKeyValues([
          ["sequence", sequence],
          ["published", outcome.published ? "yes" : "no (replayed before)"],
          ["subject", letter.originalSubject],
          ["stream", replay.stream],
          ["stream-sequence", replay.sequence],
          ["message-id", replay.messageId],
          ["replayed-at", replay.replayedAt],
        ]),
      );
    });
}

function formatLetter(letter: Resource): string {
  const replay = letter.replay as Record<string, unknown> | null;
  const headers = (letter.headers ?? {}) as Record<string, string>;
  const pairs: Array<readonly [string, unknown]> = [
    ["sequence", letter.sequence],
    ["subject", letter.originalSubject],
    ["stream", letter.originalSequence === null ? letter.originalStream : `${String(letter.originalStream)} #${String(letter.originalSequence)}`],
    ["deliveries", letter.deliveryCount],
    ["error", letter.error],
    ["task", letter.taskId],
    ["request", letter.requestId],
    ["event-type", letter.eventType],
    ["correlation", letter.correlationId],
    ["dead-lettered", letter.deadLetteredAt],
    ["replayed", replay ? `${String(replay.replayedAt)} to ${String(replay.stream)} #${String(replay.sequence)} (${String(replay.messageId)})` : "no"],
  ];
  const headerLines = Object.entries(headers).map(([name, value]) => `  ${name}: ${value}`);
  // A text body is printed as sent, minus control characters that could drive the terminal.
  // eslint-disable-next-line no-control-regex
  const body = String(letter.body ?? "").replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
  return [
    formatKeyValues(pairs),
    `headers:\n${headerLines.length ? `${headerLines.join("\n")}\n` : "  -\n"}`,
    `body (${String(letter.bodyEncoding)}):\n${body}${body.endsWith("\n") ? "" : "\n"}`,
  ].join("");
}
