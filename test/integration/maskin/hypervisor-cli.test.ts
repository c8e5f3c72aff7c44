import { Command } from "commander";
import { describe, expect, it } from "vitest";
import { registerWorkerCommand, type WorkerCommandOptions } from "../../../cli/commands/worker.ts";
import { CliError, ExitCode } from "../../../cli/core/errors.ts";
import { runWorker } from "../../../cli/up/sagas.ts";

/** `dv worker --service hypervisor` needs `--host` (one worker per hypervisor host); --host and --vm-dir parse. */

const io = { out: () => {}, err: () => {} };

describe("dv worker --service hypervisor", () => {
  it("without --host is a usage error before anything starts", async () => {
    const options: WorkerCommandOptions = { service: ["hypervisor"], datacenter: "osl1", heartbeatMs: 2000, concurrency: 1 };
    const error = await runWorker(options, io, {}).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CliError);
    expect((error as CliError).exitCode).toBe(ExitCode.usage);
    expect((error as Error).message).toMatch(/--host/);
  });

  it("parses --host (a subject token) and --vm-dir", async () => {
    const parse = async (argv: string[]) => {
      let seen: WorkerCommandOptions | undefined;
      const program = new Command().exitOverride().configureOutput({ writeErr: () => {}, writeOut: () => {} });
      registerWorkerCommand(program, { io, env: {}, exitCode: 0 } as never);
      const worker = program.commands.find((c) => c.name() === "worker")!;
      worker.action((options: WorkerCommandOptions) => {
        seen = options;
      });
      await program.parseAsync(["node", "dv", "worker", ...argv]);
      return seen!;
    };
    expect(await parse(["--service", "hypervisor", "--datacenter", "osl1", "--host", "hv-01", "--vm-dir", "/srv/vm"])).toMatchObject({ host: "hv-01", vmDir: "/srv/vm" });
    await expect(parse(["--service", "hypervisor", "--datacenter", "osl1", "--host", "hv.01"])).rejects.toThrow(/host id/);
  });
});
