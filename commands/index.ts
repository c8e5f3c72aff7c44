/** The command pipeline: validate, load, decide, append with the expected version. */
export * from "./errors.ts";
export * from "./handler.ts";
export { executeCommand, loadStream, parseCommand, type CommandStore, type LoadedStream } from "./pipeline.ts";
export { decodeEvent, encodeEvent } from "./codec.ts";
