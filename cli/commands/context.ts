import type { Command } from "commander";
import { findContext, normaliseApiUrl, upsertContext, type Context } from "../core/config.ts";
import { CliError, ExitCode, usageError } from "../core/errors.ts";
import { formatJson, formatKeyValues, render, type Column } from "../core/output.ts";
import type { Runtime } from "../core/runtime.ts";

/** A context as shown: never the token itself, only whether there is one. */
export function publicContext(context: Context, current?: string) {
  const { token, ...rest } = context;
  return { ...rest, loggedIn: Boolean(token), ...(current !== undefined ? { current: context.name === current } : {}) };
}

type Shown = ReturnType<typeof publicContext>;

const COLUMNS: Column<Shown>[] = [
  { header: "current", value: (c) => (c.current ? "*" : "") },
  { header: "name", value: (c) => c.name },
  { header: "api", value: (c) => c.apiUrl },
  { header: "tenant", value: (c) => c.tenant },
  { header: "project", value: (c) => c.project },
  { header: "environment", value: (c) => c.environment },
  { header: "logged-in", value: (c) => (c.loggedIn ? "yes" : "no") },
];

export function registerContextCommands(program: Command, runtime: Runtime): void {
  const context = program
    .command("context")
    .summary("list, switch and edit contexts (API, token, defaults)")
    .description("contexts: which API, token, tenant, project and environment commands use (stored in DV_CONFIG, default ~/.config/dv/config.json)");

  context
    .command("list")
    .description("list contexts; * marks the current one")
    .action(async (_options, command: Command) => {
      const config = await runtime.config();
      const shown = config.contexts.map((c) => publicContext(c, config.currentContext ?? ""));
      render(runtime.io, runtime.format(command), { currentContext: config.currentContext ?? null, contexts: shown }, {
        rows: shown,
        columns: COLUMNS,
        empty: "No contexts: `dvid login --api URL ...` creates one.",
      });
    });

  context
    .command("current")
    .description("print the current context")
    .action(async (_options, command: Command) => {
      const current = await runtime.context(command);
      if (!current) throw usageError("there is no current context", "`dv context use NAME`, or `dvid login --api URL ...`");
      if (runtime.format(command) === "json") runtime.out(formatJson(publicContext(current)));
      else runtime.out(`${current.name}\n`);
    });

  context
    .command("use")
    .description("make NAME the current context")
    .argument("<name>", "context name")
    .action(async (name: string, _options, command: Command) => {
      const config = await runtime.config();
      const found = findContext(config, name);
      if (!found) {
        const names = config.contexts.map((c) => c.name);
        throw new CliError(ExitCode.notFound, `no context named ${JSON.stringify(name)}`, undefined,
          names.length ? `known: ${names.join(", ")}` : "`dvid login --api URL ...` creates one");
      }
      await runtime.saveConfig({ ...config, currentContext: name });
      if (runtime.format(command) === "json") runtime.out(formatJson(publicContext(found)));
      else runtime.out(`Switched to context ${name} (${found.apiUrl}).\n`);
    });

  context
    .command("set")
    .summary("create or change a context")
    .description("create a context or change one (default: the current one); an empty value clears a field")
    .argument("[name]", "context name (default: the current context)")
    .option("--api <url>", "API URL, e.g. http://127.0.0.1:8080 (changing it forgets the token)")
    .option("--tenant <id>", "current tenant (changing it clears project and environment)")
    .option("--project <id>", "current project (changing it clears environment)")
    .option("--env <id>", "current environment")
    .action(async (nameArg: string | undefined, options: { api?: string; tenant?: string; project?: string; env?: string }, command: Command) => {
      const config = await runtime.config();
      const name = nameArg ?? (await runtime.context(command))?.name;
      if (!name) throw usageError("no context named and no current context", "`dv context set NAME --api URL`");
      const existing = findContext(config, name);
      if (!existing && options.api === undefined) throw usageError(`context ${name} does not exist; creating it needs --api URL`);

      const notes: string[] = [];
      const next: Context = existing ? { ...existing } : { name, apiUrl: normaliseApiUrl(options.api!) };
      if (existing && options.api !== undefined) {
        const apiUrl = normaliseApiUrl(options.api);
        if (apiUrl !== existing.apiUrl) {
          next.apiUrl = apiUrl;
          if (next.token) notes.push("the token was for the old API and is forgotten: log in again");
          delete next.token;
        }
      }
      const setField = (key: "tenant" | "project" | "environment", value: string | undefined, clears: Array<"project" | "environment">) => {
        if (value === undefined) return;
        const trimmed = value.trim();
        const changed = (next[key] ?? "") !== trimmed;
        if (trimmed) next[key] = trimmed;
        else delete next[key];
        if (!changed) return;
        for (const dependent of clears) {
          const explicit = dependent === "project" ? options.project : options.env;
          if (explicit === undefined && next[dependent]) {
            notes.push(`${dependent} ${next[dependent]} cleared (it belonged to the previous ${key})`);
            delete next[dependent];
          }
        }
      };
      setField("tenant", options.tenant, ["project", "environment"]);
      setField("project", options.project, ["environment"]);
      setField("environment", options.env, []);

      let updated = upsertContext(config, next);
      if (!updated.currentContext) updated = { ...updated, currentContext: name };
      await runtime.saveConfig(updated);
      if (runtime.format(command) === "json") {
        runtime.out(formatJson(publicContext(next)));
        return;
      }
      runtime.out(`Context ${name} ${existing ? "updated" : "created"}.\n`);
      runtime.out(formatKeyValues([
        ["api", next.apiUrl],
        ["tenant", next.tenant],
        ["project", next.project],
        ["environment", next.environment],
      ]));
      for (const note of notes) runtime.err(`note: ${note}\n`);
    });

  context
    .command("delete")
    .description("remove a context and its token")
    .argument("<name>", "context name")
    .action(async (name: string) => {
      const config = await runtime.config();
      if (!findContext(config, name)) throw new CliError(ExitCode.notFound, `no context named ${JSON.stringify(name)}`);
      const { currentContext, ...rest } = config;
      await runtime.saveConfig({
        ...rest,
        contexts: config.contexts.filter((c) => c.name !== name),
        ...(currentContext && currentContext !== name ? { currentContext } : {}),
      });
      runtime.out(`Context ${name} deleted.\n`);
    });
}
