import { Argument, type Command } from "commander";
import { bashScript, completionNodes, zshScript } from "../core/completion.ts";
import type { Runtime } from "../core/runtime.ts";
import type { Bin } from "../main.ts";

const FAMILY: readonly Bin[] = ["dv", "dvid", "dvce", "dvke", "dvnet", "dvos", "dvapp"];

export function registerCompletionCommand(program: Command, runtime: Runtime, build: (bin: Bin) => Command): void {
  program
    .command("completion")
    .summary("print a bash or zsh completion script")
    .description("print a shell completion script for the whole dv* family: source <(dv completion bash)")
    .addArgument(new Argument("<shell>", "bash or zsh").choices(["bash", "zsh"]))
    .action((shell: "bash" | "zsh") => {
      const nodes = FAMILY.flatMap((bin) => completionNodes(build(bin)));
      runtime.out(shell === "bash" ? bashScript(FAMILY, nodes) : zshScript(FAMILY, nodes));
    });
}
