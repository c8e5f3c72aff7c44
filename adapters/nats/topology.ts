import {
  DiscardPolicy,
  JetStreamApiCodes,
  JetStreamApiError,
  RetentionPolicy,
  StorageType,
  type JetStreamManager,
  type StreamConfig,
} from "@nats-io/jetstream";
import { nanos } from "@nats-io/transport-node";
import { DEFAULT_NAMESPACE, STREAMS, type NatsNamespace, type StreamKey } from "./namespace.ts";

/**
 * DV_DLQ's subjects. sagas/README.md says `dv.dlq.>`, but JetStream refuses
 * that stream next to DV_EVENTS (`dv.*.evt.>`): `dv.dlq.evt.x` would match
 * both ("subjects overlap with an existing stream"). A dead letter therefore
 * goes to `dv.dlq.msg.<…>` (use dlqSubject): still under `dv.dlq.`, and the
 * fixed third token `msg` matches none of `evt`, `cmd`, `res`.
 */
export const DLQ_TOKEN = "msg";

export function dlqSubject(namespace: NatsNamespace, ...tokens: string[]): string {
  return namespace.subject("dlq", DLQ_TOKEN, ...tokens);
}

export interface EnsureStreamsOptions {
  readonly namespace?: NatsNamespace;
  /** File (default) or memory. */
  readonly storage?: "file" | "memory";
  /** Default 1; 3 on a JetStream cluster. */
  readonly replicas?: number;
  /** Duplicate window of DV_EVENTS, DV_WORK and DV_RESULTS (default 10 min): how long a Nats-Msg-Id is remembered. */
  readonly duplicateWindowMs?: number;
  /** Age limit of DV_EVENTS and DV_RESULTS messages; 0 (default) keeps them until other limits apply. Postgres keeps the log anyway. */
  readonly maxAgeMs?: number;
}

export interface EnsuredStream {
  readonly key: StreamKey;
  readonly name: string;
  readonly action: "created" | "updated" | "unchanged";
}

export const DEFAULT_DUPLICATE_WINDOW_MS = 10 * 60_000;

/** The desired configuration of each stream, by key. */
export function streamConfigs(options: EnsureStreamsOptions = {}): Record<StreamKey, Partial<StreamConfig> & { name: string; subjects: string[] }> {
  const ns = options.namespace ?? DEFAULT_NAMESPACE;
  const common = {
    storage: options.storage === "memory" ? StorageType.Memory : StorageType.File,
    num_replicas: options.replicas ?? 1,
    duplicate_window: nanos(options.duplicateWindowMs ?? DEFAULT_DUPLICATE_WINDOW_MS),
    discard: DiscardPolicy.Old,
  };
  const maxAge = nanos(options.maxAgeMs ?? 0);
  return {
    events: { ...common, name: ns.stream(STREAMS.events), subjects: [ns.subject("*", "evt", ">")], retention: RetentionPolicy.Limits, max_age: maxAge },
    work: {
      ...common,
      name: ns.stream(STREAMS.work),
      subjects: [ns.subject("*", "cmd", ">")],
      retention: RetentionPolicy.Workqueue,
      // A full work queue refuses new work rather than silently dropping queued work.
      discard: DiscardPolicy.New,
    },
    results: { ...common, name: ns.stream(STREAMS.results), subjects: [ns.subject("*", "res", ">")], retention: RetentionPolicy.Limits, max_age: maxAge },
    dlq: { ...common, name: ns.stream(STREAMS.dlq), subjects: [ns.subject("dlq", DLQ_TOKEN, ">")], retention: RetentionPolicy.Limits },
  };
}

/**
 * Creates the four streams, or updates the settings that may change
 * (subjects, limits, duplicate window, replicas). Safe to call on every
 * start and from several processes at once. A stream whose retention or
 * storage differs cannot be changed in place: that throws, naming the stream,
 * rather than deleting anything.
 */
export async function ensureStreams(jsm: JetStreamManager, options: EnsureStreamsOptions = {}): Promise<EnsuredStream[]> {
  const result: EnsuredStream[] = [];
  for (const [key, wanted] of Object.entries(streamConfigs(options)) as Array<[StreamKey, ReturnType<typeof streamConfigs>[StreamKey]]>) {
    let info = await jsm.streams.info(wanted.name).catch((error: unknown) => {
      if (isStreamNotFound(error)) return null;
      throw error;
    });
    if (!info) {
      try {
        await jsm.streams.add(wanted);
        result.push({ key, name: wanted.name, action: "created" });
        continue;
      } catch (error) {
        // Another process created it between our info and add: fall through to compare.
        info = await jsm.streams.info(wanted.name).catch(() => null);
        if (!info) throw error;
      }
    }
    const current = info.config;
    if (current.retention !== wanted.retention || current.storage !== wanted.storage) {
      throw new Error(
        `JetStream stream ${wanted.name} has retention ${current.retention}/storage ${current.storage}, ` +
          `wanted ${wanted.retention}/${wanted.storage}; these cannot change in place (back it up, delete it, start again)`,
      );
    }
    const differs =
      JSON.stringify([...(current.subjects ?? [])].sort()) !== JSON.stringify([...wanted.subjects].sort()) ||
      current.duplicate_window !== wanted.duplicate_window ||
      current.num_replicas !== wanted.num_replicas ||
      current.discard !== wanted.discard ||
      (wanted.max_age !== undefined && current.max_age !== wanted.max_age);
    if (!differs) {
      result.push({ key, name: wanted.name, action: "unchanged" });
      continue;
    }
    await jsm.streams.update(wanted.name, {
      subjects: wanted.subjects,
      duplicate_window: wanted.duplicate_window,
      num_replicas: wanted.num_replicas,
      discard: wanted.discard,
      ...(wanted.max_age !== undefined ? { max_age: wanted.max_age } : {}),
    });
    result.push({ key, name: wanted.name, action: "updated" });
  }
  return result;
}

/** Deletes the namespace's streams (tests; never called by production code). */
export async function deleteStreams(jsm: JetStreamManager, namespace: NatsNamespace): Promise<void> {
  for (const name of Object.values(STREAMS)) {
    await jsm.streams.delete(namespace.stream(name)).catch((error: unknown) => {
      if (!isStreamNotFound(error)) throw error;
    });
  }
}

function isStreamNotFound(error: unknown): boolean {
  return error instanceof JetStreamApiError && error.code === JetStreamApiCodes.StreamNotFound;
}
