/** Sentral tasks: every long operation, its steps, blocks and outcome. */
export * from "./commands.ts";
export * from "./events.ts";
export * from "./state.ts";
export * from "./stream.ts";
export { taskDecider } from "./decider.ts";
