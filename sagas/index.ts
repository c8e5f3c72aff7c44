import type { TaskSaga } from "./runtime/types.ts";

/**
 * Every saga `dv up` runs. Each bounded context adds its own here
 * (sagas/<context>/…), e.g. issue 5's maskin provisioning saga.
 */
export const allSagas: readonly TaskSaga<any>[] = [];

export * from "./runtime/index.ts";
