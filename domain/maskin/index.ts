/** Maskin: bare-metal hosts (pool, host lifecycle, power sync). Pure rules; see README. */
export * from "./commands.ts";
export * from "./events.ts";
export * from "./state.ts";
export * from "./stream.ts";
export * from "./power-sync.ts";
export { hostDecider } from "./host.ts";
export { poolDecider } from "./pool.ts";
