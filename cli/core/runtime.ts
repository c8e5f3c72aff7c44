import type { Command } from "commander";
import { configPath, findContext, loadConfig, normaliseApiUrl, saveConfig, type ConfigFile, type Context } from "./config.ts";
import { CliError, ExitCode, usageError } from "./errors.ts";
import { ApiClient } from "./http.ts";
import { parseOutputFormat, processIo, type Io, type OutputFormat } from "./output.ts";

/** What every command needs: where to write, the config, the chosen context, an API client. */
export class Runtime {
  readonly configPath: string;
  /** What the process exits with when the command returns normally (`dv up` sets it). */
  exitCode: number = 0;
  private cached: ConfigFile | undefined;

  constructor(
    readonly io: Io = processIo,
    readonly env: NodeJS.ProcessEnv = process.env,
    readonly fetchImpl: typeof fetch = fetch,
  ) {
    this.configPath = configPath(env);
  }

  async config(): Promise<ConfigFile> {
    this.cached ??= await loadConfig(this.configPath, (message) => this.io.err(`warning: ${message}\n`));
    return this.cached;
  }

  async saveConfig(config: ConfigFile): Promise<void> {
    await saveConfig(this.configPath, config);
    this.cached = config;
  }

  /** The context named by --context, DV_CONTEXT or the config's currentContext; undefined when there is none. */
  async context(command: Command): Promise<Context | undefined> {
    const config = await this.config();
    const wanted = globals(command).context ?? (this.env.DV_CONTEXT?.trim() || undefined);
    if (wanted) {
      const context = findContext(config, wanted);
      if (!context) throw usageError(`no context named ${JSON.stringify(wanted)} in ${this.configPath}`, "see `dv context list`");
      return context;
    }
    return config.currentContext ? findContext(config, config.currentContext) : undefined;
  }

  /**
   * A client for the chosen context. DV_API_URL and DV_TOKEN override it for
   * scripts; a context's token is only ever sent to that context's own URL.
   */
  async client(command: Command): Promise<ApiClient> {
    const context = await this.context(command);
    const envUrl = this.env.DV_API_URL?.trim();
    const apiUrl = envUrl ? normaliseApiUrl(envUrl) : context?.apiUrl;
    if (!apiUrl) {
      throw new CliError(ExitCode.auth, "no API to talk to: there is no current context", undefined,
        "log in first: `dvid login --api http://127.0.0.1:8080 --bootstrap-secret ...` (or set DV_API_URL and DV_TOKEN)");
    }
    const token = this.env.DV_TOKEN?.trim() || (context && context.apiUrl === apiUrl ? context.token : undefined);
    const timeout = Number(this.env.DV_TIMEOUT);
    return new ApiClient({
      apiUrl,
      fetch: this.fetchImpl,
      ...(token ? { token } : {}),
      ...(Number.isFinite(timeout) && timeout > 0 ? { timeoutMs: timeout * 1000 } : {}),
    });
  }

  format(command: Command): OutputFormat {
    return globals(command).output;
  }

  out(text: string): void {
    this.io.out(text);
  }

  err(text: string): void {
    this.io.err(text);
  }
}

export interface GlobalOptions {
  output: OutputFormat;
  context?: string;
}

export function globals(command: Command): GlobalOptions {
  const options = command.optsWithGlobals() as { output?: string; context?: string };
  return {
    output: parseOutputFormat(options.output ?? "table"),
    ...(options.context ? { context: options.context } : {}),
  };
}
