import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import type { NatsNamespace } from "../../nats/namespace.ts";
import type { VmRuntime } from "../../qemu/port.ts";
import { ConsoleRequestSchema, consoleSubject, type ConsoleReply } from "./console-client.ts";

/**
 * Serves VM consoles of this hypervisor on `dv.hypervisor.console.<dc>.<hostId>`
 * (console-client.ts is the other side): each request reads a chunk of the
 * VM's serial log through the runtime (`readConsole`) and answers
 * `{text, nextOffset, size}` or `{error}`. Reads only.
 */
export function serveVmConsole(options: {
  readonly nc: NatsConnection;
  readonly namespace: NatsNamespace;
  readonly datacenter: string;
  readonly hostId: string;
  readonly runtime: Pick<VmRuntime, "readConsole">;
  readonly onError?: (error: unknown, context: string) => void;
}): { readonly subject: string; stop(): Promise<void> } {
  const subject = consoleSubject(options.namespace, options.datacenter, options.hostId);
  const subscription: Subscription = options.nc.subscribe(subject, {
    callback: (error, message) => {
      if (error) {
        options.onError?.(error, `console subscription ${subject}`);
        return;
      }
      void (async () => {
        let reply: ConsoleReply;
        try {
          const parsed = ConsoleRequestSchema.safeParse(message.json());
          if (!parsed.success) {
            reply = { error: `invalid console request: ${parsed.error.issues.map((i) => `${i.path.join(".") || "request"}: ${i.message}`).join("; ")}` };
          } else {
            const chunk = await options.runtime.readConsole(parsed.data.vmId, { offset: parsed.data.offset, maxBytes: parsed.data.maxBytes });
            reply = { text: chunk.text, nextOffset: chunk.nextOffset, size: chunk.size };
          }
        } catch (failure) {
          reply = { error: failure instanceof Error ? failure.message : String(failure) };
        }
        try {
          message.respond(JSON.stringify(reply));
        } catch (failure) {
          options.onError?.(failure, `console reply on ${subject}`);
        }
      })();
    },
  });
  return {
    subject,
    async stop() {
      await subscription.drain().catch(() => subscription.unsubscribe());
    },
  };
}
