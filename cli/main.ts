import { readFileSync } from "node:fs";
import { Command, CommanderError, Option } from "commander";
import { CliError, ExitCode } from "./core/errors.ts";
import { OUTPUT_FORMATS, processIo, type Io } from "./core/output.ts";
import { formatProblem } from "./core/problem.ts";
import { Runtime } from "./core/runtime.ts";
import { registerContextCommands } from "./commands/context.ts";
import { registerDlqCommands } from "./commands/dlq.ts";
import { registerCompletionCommand } from "./commands/completion.ts";
import { registerEventCommands } from "./commands/events.ts";
import { registerInventoryCommands } from "./commands/inventory.ts";
import { registerHostCommands } from "./commands/host.ts";
import { registerVmCommands } from "./commands/vm.ts";
import { registerDiskCommands } from "./commands/disk.ts";
import { registerHypervisorCommands } from "./commands/hypervisor.ts";
import { registerImageCommands } from "./commands/image.ts";
import { registerQuotaCommands } from "./commands/quota.ts";
import { registerTaskCommands } from "./commands/task.ts";
import { registerTenancyCommands } from "./commands/tenancy.ts";
import { registerIdentityCommands } from "./identity/commands.ts";
import { PLANNED, registerPlanned, type PlannedBin } from "./planned.ts";
import { registerUpCommand } from "./up/command.ts";
import { registerWorkerCommand } from "./commands/worker.ts";

/** Every bin of the family; one codebase, one program per bin. */
export const BINS = ["dv", "dvid", "dvce", "dvke", "dvnet", "dvos", "dvapp"] as const;
export type Bin = (typeof BINS)[number];

const VERSION = (() => {
  try {
    return (JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string }).version;
  } catch {
    return "0.0.0";
  }
})();

const DESCRIPTIONS: Record<Bin, string> = {
  dv: "Dataverket: run the control plane and manage tenants, projects, environments and quotas",
  dvid: "Identitet: log in, log out, who am I, tokens",
  dvce: "Maskin: compute",
  dvke: "Plattform: Kubernetes clusters",
  dvnet: "Nett: networks",
  dvos: "Objekt: object storage",
  dvapp: "Tjeneste: apps",
};

/** The command tree of one bin. Cheap: heavy modules (the server for `dv up`) load inside actions. */
export function buildProgram(bin: Bin, runtime: Runtime): Command {
  const program = new Command(bin)
    .description(DESCRIPTIONS[bin])
    .version(VERSION, "-V, --version", "print the version")
    .helpOption("-h, --help", "show help")
    .addOption(new Option("-o, --output <format>", "output format").choices(OUTPUT_FORMATS).default("table"))
    .option("--context <name>", "use this context instead of the current one (also DV_CONTEXT)")
    .showSuggestionAfterError(true)
    .configureHelp({ showGlobalOptions: true, sortSubcommands: false })
    .helpCommand(false);

  switch (bin) {
    case "dv":
      registerUpCommand(program, runtime);
      registerWorkerCommand(program, runtime);
      registerContextCommands(program, runtime);
      registerTenancyCommands(program, runtime);
      registerQuotaCommands(program, runtime);
      registerEventCommands(program, runtime);
      registerTaskCommands(program, runtime);
      registerDlqCommands(program, runtime);
      registerCompletionCommand(program, runtime, (name) => buildProgram(name, runtime));
      break;
    case "dvid":
      registerIdentityCommands(program, runtime);
      break;
    case "dvce":
      registerInventoryCommands(program, runtime);
      registerHostCommands(program, runtime);
      registerVmCommands(program, runtime);
      registerHypervisorCommands(program, runtime);
      registerImageCommands(program, runtime);
      registerDiskCommands(program, runtime);
      program.addHelpText("after", `\nStill to come:\n${PLANNED.dvce.areas.map(([area, what]) => `  ${area}  ${what}`).join("\n")}\n`);
      break;
    default:
      registerPlanned(program, runtime, PLANNED[bin as PlannedBin]);
  }
  applyToTree(program, (command) => {
    command.helpCommand(false);
    command.exitOverride();
    command.configureOutput({
      writeOut: (text) => runtime.io.out(text),
      writeErr: (text) => runtime.io.err(text),
      outputError: (text, write) => write(text),
    });
  });
  return program;
}

export function applyToTree(command: Command, visit: (command: Command) => void): void {
  visit(command);
  for (const sub of command.commands) applyToTree(sub, visit);
}

/**
 * Runs one bin with the user's arguments and returns the exit code. Errors
 * are printed as a message (and the server's problem details), never as a
 * stack trace; DV_DEBUG=1 prints the stack as well.
 */
export async function main(bin: Bin, argv: readonly string[], io: Io = processIo, env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const runtime = new Runtime(io, env);
  const program = buildProgram(bin, runtime);
  try {
    await program.parseAsync([...argv], { from: "user" });
    return runtime.exitCode;
  } catch (error) {
    return report(error, io, env);
  }
}

export function report(error: unknown, io: Io, env: NodeJS.ProcessEnv = process.env): number {
  if (error instanceof CommanderError) {
    // Help and version end with exitCode 0; everything else commander rejects is a usage error (it printed why).
    return error.exitCode === 0 ? ExitCode.ok : ExitCode.usage;
  }
  if (error instanceof CliError) {
    const lines = error.problem ? formatProblem(error.problem, error.message) : [`error: ${error.message}`];
    if (error.hint) lines.push(`hint: ${error.hint}`);
    io.err(`${lines.join("\n")}\n`);
    return error.exitCode;
  }
  const message = error instanceof Error ? error.message : String(error);
  io.err(`error: ${message}\n`);
  if (env.DV_DEBUG && error instanceof Error && error.stack) io.err(`${error.stack}\n`);
  return ExitCode.server;
}
