import { execFileSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { completionNodes } from "../../../cli/core/completion.ts";
import { Runtime } from "../../../cli/core/runtime.ts";
import { buildProgram } from "../../../cli/main.ts";
import { captureIo, cleanEnv, runCli } from "./support.ts";

describe("completion tree", () => {
  it("walks every command, with inherited global options and their choices", () => {
    const nodes = completionNodes(buildProgram("dv", new Runtime(captureIo(), {})));
    const byPath = new Map(nodes.map((n) => [n.path, n]));
    expect(byPath.get("dv")!.subcommands.map((s) => s.name)).toEqual(["up", "worker", "context", "tenant", "project", "env", "quota", "events", "task", "dlq", "completion"]);
    expect(byPath.get("dv tenant")!.subcommands.map((s) => s.name)).toEqual(["create", "list", "get", "rename", "suspend", "resume"]);
    const create = byPath.get("dv project create")!;
    const names = create.options.flatMap((o) => o.names);
    expect(names).toEqual(expect.arrayContaining(["--tenant", "--description", "-o", "--output", "--context", "--help"]));
    expect(create.options.find((o) => o.names.includes("--output"))!.choices).toEqual(["table", "json"]);
    expect(byPath.get("dv completion")!.argumentChoices).toEqual(["bash", "zsh"]);
    expect(byPath.get("dv quota set")!.options.flatMap((o) => o.names)).toEqual(expect.arrayContaining(["--vcpus", "--memory-mib", "--vms", "--hosts", "--networks", "--buckets"]));
  });
});

/** Runs the generated bash completion for a command line (cursor at the end) and returns the candidates. */
function complete(script: string, line: string): string[] {
  const words = line.split(" ");
  const program = `${script}
COMP_WORDS=(${words.map((w) => `'${w}'`).join(" ")}); COMP_CWORD=${words.length - 1}
_dv_complete; printf '%s\\n' "\${COMPREPLY[@]}"`;
  return execFileSync("bash", ["-c", program], { encoding: "utf8" }).split("\n").filter(Boolean);
}

describe("dv completion bash", () => {
  it("completes subcommands, options, option values and argument choices for every bin", async () => {
    const result = await runCli("dv", ["completion", "bash"], cleanEnv({ DV_CONFIG: "/nonexistent" }));
    expect(result.code).toBe(0);
    const script = result.stdout;
    expect(script).toContain("complete -F _dv_complete dv dvid dvce dvke dvnet dvos dvapp");
    expect(complete(script, "dv ")).toEqual(["up", "worker", "context", "tenant", "project", "env", "quota", "events", "task", "dlq", "completion"]);
    expect(complete(script, "dv ten")).toEqual(["tenant"]);
    expect(complete(script, "dv tenant ")).toEqual(["create", "list", "get", "rename", "suspend", "resume"]);
    expect(complete(script, "dv -o json project cr")).toEqual(["create"]);
    expect(complete(script, "dv project create --")).toEqual(expect.arrayContaining(["--tenant", "--description", "--output", "--context"]));
    expect(complete(script, "dv tenant list --output ")).toEqual(["table", "json"]);
    expect(complete(script, "dv project create --tenant acme ")).toEqual([]);
    expect(complete(script, "dv completion ")).toEqual(["bash", "zsh"]);
    expect(complete(script, "dvid ")).toEqual(["login", "logout", "whoami", "token"]);
    expect(complete(script, "dvid login --")).toEqual(expect.arrayContaining(["--api", "--bootstrap-secret"]));
  });

  it("zsh: a script that registers the same family", async () => {
    const result = await runCli("dv", ["completion", "zsh"], cleanEnv({ DV_CONFIG: "/nonexistent" }));
    expect(result.code).toBe(0);
    expect(result.stdout.startsWith("#compdef dv dvid dvce dvke dvnet dvos dvapp\n")).toBe(true);
    expect(result.stdout).toContain("compdef _dv dv dvid dvce dvke dvnet dvos dvapp");
    expect(result.stdout).toContain("'dv tenant') printf '%s\\n' 'create:create a tenant");
    expect((await runCli("dv", ["completion", "fish"], cleanEnv({}))).code).toBe(1);
  });
});
