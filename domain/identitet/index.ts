/** Identitet: who holds which role. */
export * from "./commands.ts";
export * from "./events.ts";
export * from "./roles.ts";
export * from "./stream.ts";
export * from "./subjects.ts";
export { holds, identityDecider, initialSubjectGrantsState, type SubjectGrantsState } from "./decider.ts";
