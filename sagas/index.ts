import type { TaskSaga } from "./runtime/types.ts";
import { projectBootstrapSaga } from "./sentral/project-bootstrap.ts";

/**
 * Every saga `dv up` runs. Each bounded context adds its own here
 * (sagas/<context>/…), e.g. issue 5's maskin provisioning saga.
 */
export const allSagas: readonly TaskSaga<any>[] = [projectBootstrapSaga];

export * from "./runtime/index.ts";
