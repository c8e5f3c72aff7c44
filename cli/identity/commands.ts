import type { Command } from "commander";
import { contextNameFor, findContext, normaliseApiUrl, upsertContext, type Context } from "../core/config.ts";
import { CliError, ExitCode, usageError } from "../core/errors.ts";
import { ApiClient } from "../core/http.ts";
import { formatJson, formatKeyValues } from "../core/output.ts";
import { globals, type Runtime } from "../core/runtime.ts";
import { runDeviceFlow } from "./device-flow.ts";

/** POST /v1/auth/token with grant_type bootstrap. */
interface TokenAnswer {
  access_token: string;
  expires_in?: number;
  subject?: string;
  token_type?: string;
}

/** GET /v1/auth/config (the OIDC fields are null when the provider does not offer them). */
export interface AuthConfig {
  oidc: {
    issuer: string;
    clientId: string | null;
    deviceAuthorizationEndpoint: string | null;
    tokenEndpoint: string | null;
    scope?: string;
  } | null;
}

export function registerIdentityCommands(program: Command, runtime: Runtime): void {
  program
    .command("login")
    .summary("log in and save the token in a context")
    .description("log in to an API and make its context current: with the bootstrap secret `dv up` printed, or through the OIDC provider (device flow)")
    .option("--api <url>", "API URL (default: the current context's)")
    .option("--bootstrap-secret <secret>", "the one-time bootstrap credential `dv up` printed on its first start (non-interactive)")
    .addHelpText("after", "\nThe token is saved in the context named by --context (default: the context already pointing at this API, else HOST-PORT), which becomes current.")
    .action(async (options: { api?: string; bootstrapSecret?: string }, command: Command) => {
      const config = await runtime.config();
      const current = await runtime.context(command).catch(() => undefined);
      const apiUrl = options.api ? normaliseApiUrl(options.api) : current?.apiUrl;
      if (!apiUrl) throw usageError("which API? pass --api URL", "e.g. `dvid login --api http://127.0.0.1:8080 --bootstrap-secret ...`");
      const client = new ApiClient({ apiUrl, fetch: runtime.fetchImpl });
      const json = runtime.format(command) === "json";

      let token: string;
      let expiresIn: number | undefined;
      let subject: string | undefined;
      if (options.bootstrapSecret !== undefined) {
        const secret = options.bootstrapSecret.trim();
        if (!secret) throw usageError("--bootstrap-secret is empty");
        const answer = await client.post<TokenAnswer>("/v1/auth/token", { grant_type: "bootstrap", secret }, { auth: false });
        if (!answer || typeof answer.access_token !== "string") throw new CliError(ExitCode.server, "the server answered the token request without an access_token");
        token = answer.access_token;
        expiresIn = answer.expires_in;
        subject = answer.subject;
      } else {
        const authConfig = await client.get<AuthConfig>("/v1/auth/config", { auth: false });
        const oidc = authConfig?.oidc;
        if (!oidc) {
          throw usageError(`${apiUrl} has no OIDC provider configured, so there is no interactive login`,
            "log in with the bootstrap credential `dv up` printed: `dvid login --api URL --bootstrap-secret SECRET`");
        }
        if (!oidc.clientId || !oidc.deviceAuthorizationEndpoint || !oidc.tokenEndpoint) {
          throw usageError(`${apiUrl} uses the OIDC provider ${oidc.issuer}, but it offers no device login for the CLI (${[
            !oidc.clientId && "no client id: DV_OIDC_CLIENT_ID",
            !oidc.deviceAuthorizationEndpoint && "no device_authorization_endpoint",
            !oidc.tokenEndpoint && "no token_endpoint",
          ].filter(Boolean).join(", ")})`, "log in with the bootstrap credential, or ask the operator to enable the device flow");
        }
        const { clientId, deviceAuthorizationEndpoint, tokenEndpoint } = oidc;
        const controller = new AbortController();
        const onSigint = () => controller.abort(new CliError(ExitCode.auth, "login cancelled"));
        process.once("SIGINT", onSigint);
        try {
          const tokens = await runDeviceFlow({
            deviceAuthorizationEndpoint,
            tokenEndpoint,
            clientId,
            scope: oidc.scope ?? "openid profile email",
            fetch: runtime.fetchImpl,
            signal: controller.signal,
            onPrompt: (prompt) => {
              // Instructions go to stderr so `--output json` keeps stdout parseable.
              runtime.err(`To log in, open ${prompt.verificationUriComplete ?? prompt.verificationUri}\n`);
              runtime.err(`and enter the code: ${prompt.userCode}\n`);
              runtime.err(`(the code expires in ${Math.round(prompt.expiresInSeconds / 60)} min; waiting for approval...)\n`);
            },
          });
          token = tokens.accessToken;
          expiresIn = tokens.expiresIn;
        } finally {
          process.removeListener("SIGINT", onSigint);
        }
        // Prove the API accepts what the provider issued before saving it.
        const me = await new ApiClient({ apiUrl, token, fetch: runtime.fetchImpl }).get<Record<string, unknown>>("/v1/auth/whoami");
        subject = subjectOf(me);
      }

      const name = globals(command).context ?? config.contexts.find((c) => c.apiUrl === apiUrl)?.name ?? contextNameFor(apiUrl);
      const existing = findContext(config, name);
      const next: Context = { ...(existing ?? {}), name, apiUrl, token };
      if (existing && existing.apiUrl !== apiUrl) {
        // Same name, another API: the old tenant/project/environment mean nothing there.
        delete next.tenant;
        delete next.project;
        delete next.environment;
      }
      if (expiresIn !== undefined) next.tokenExpiresAt = new Date(Date.now() + expiresIn * 1000).toISOString();
      else delete next.tokenExpiresAt;
      await runtime.saveConfig({ ...upsertContext(config, next), currentContext: name });

      if (json) {
        runtime.out(formatJson({ context: name, apiUrl, subject: subject ?? null, tokenExpiresAt: next.tokenExpiresAt ?? null }));
      } else {
        runtime.out(`Logged in to ${apiUrl}${subject ? ` as ${subject}` : ""}; context ${name} is current.\n`);
      }
    });

  program
    .command("logout")
    .summary("forget the current token")
    .description("forget the token of the current context (the context itself stays)")
    .action(async (_options, command: Command) => {
      const config = await runtime.config();
      const context = await runtime.context(command);
      if (!context) throw usageError("there is no current context to log out of");
      if (!context.token) {
        runtime.err(`Not logged in to context ${context.name}.\n`);
        return;
      }
      const { token: _token, tokenExpiresAt: _expires, ...rest } = context;
      await runtime.saveConfig(upsertContext(config, rest as Context));
      runtime.out(`Logged out of ${context.apiUrl} (context ${context.name}).\n`);
    });

  program
    .command("whoami")
    .description("who the API thinks you are: subject, issuer and roles")
    .action(async (_options, command: Command) => {
      const client = await runtime.client(command);
      if (!client.hasToken) throw new CliError(ExitCode.auth, "not logged in", undefined, "`dvid login --api URL ...`");
      const me = await client.get<Record<string, unknown>>("/v1/auth/whoami");
      if (runtime.format(command) === "json") {
        runtime.out(formatJson(me));
        return;
      }
      runtime.out(formatKeyValues(whoamiPairs(me, client.apiUrl)));
    });

  program
    .command("token")
    .summary("print the current token")
    .description("print the current context's token, for scripts: curl -H \"Authorization: Bearer $(dvid token)\" ...")
    .action(async (_options, command: Command) => {
      const context = await runtime.context(command);
      const token = runtime.env.DV_TOKEN?.trim() || context?.token;
      if (!token) throw new CliError(ExitCode.auth, "not logged in", undefined, "`dvid login --api URL ...`");
      if (runtime.format(command) === "json") {
        runtime.out(formatJson({ token, expiresAt: (context?.tokenExpiresAt as string | undefined) ?? null }));
      } else {
        runtime.out(`${token}\n`);
      }
      if (typeof context?.tokenExpiresAt === "string" && Date.parse(context.tokenExpiresAt) < Date.now()) {
        runtime.err(`warning: this token expired at ${context.tokenExpiresAt}; run \`dvid login\` again\n`);
      }
    });
}

function subjectOf(me: Record<string, unknown> | undefined): string | undefined {
  if (!me) return undefined;
  for (const key of ["subject", "sub", "id"]) if (typeof me[key] === "string") return me[key] as string;
  const actor = me.actor;
  if (typeof actor === "object" && actor !== null) return subjectOf(actor as Record<string, unknown>);
  return undefined;
}

export function whoamiPairs(me: Record<string, unknown>, apiUrl: string): Array<[string, unknown]> {
  const source = typeof me.actor === "object" && me.actor !== null ? { ...me, ...(me.actor as Record<string, unknown>) } : me;
  const roles = Array.isArray(source.roles)
    ? source.roles.map((role) => {
        if (typeof role === "string") return role;
        const r = role as Record<string, unknown>;
        const scope = [r.tenantId, r.projectId].filter((v) => typeof v === "string").join("/");
        return scope ? `${String(r.role)}(${scope})` : String(r.role);
      })
    : [];
  const pairs: Array<[string, unknown]> = [
    ["api", apiUrl],
    ["subject", subjectOf(me)],
    ["kind", source.kind],
    ["issuer", source.issuer],
    ["roles", roles.length ? roles.join(", ") : undefined],
  ];
  return pairs.filter(([key, value]) => key === "subject" || key === "api" || value !== undefined);
}
