/** adapters/nats: the NATS JetStream side of Dataverket (see README.md). */
export { DEFAULT_NATS_URL, NatsLink, natsUrl, type NatsLinkEvent, type NatsLinkOptions } from "./connection.ts";
export { DEFAULT_NAMESPACE, STREAMS, SUBJECT_ROOT, isSubjectToken, natsNamespace, type NatsNamespace, type StreamKey } from "./namespace.ts";
export { serviceForStream, subjectForEvent, typeWords, type SubjectSource } from "./subjects.ts";
export {
  DEFAULT_DUPLICATE_WINDOW_MS,
  DLQ_TOKEN,
  deleteStreams,
  dlqSubject,
  ensureStreams,
  streamConfigs,
  type EnsureStreamsOptions,
  type EnsuredStream,
} from "./topology.ts";
export { EVENT_HEADERS, Relay, relayedEvent, type RelayOptions, type RelayState, type RelayStatus, type RelayedEvent } from "./relay.ts";
