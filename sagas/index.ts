import type { TaskSaga } from "./runtime/types.ts";
import { bmcCheckSaga, hostPowerSaga } from "./maskin/host-power.ts";
import { hostProvisionSaga } from "./maskin/host-provision.ts";
import { hostReleaseSaga } from "./maskin/host-release.ts";
import { diskImageRemoveSaga, vmCreateSaga, vmDeleteSaga, vmRebootSaga, vmReconcileSaga, vmStartSaga, vmStopSaga } from "./maskin/vm/index.ts";
import { projectBootstrapSaga } from "./sentral/project-bootstrap.ts";

/**
 * Every saga `dv up` runs. Each bounded context adds its own here
 * (sagas/<context>/…), e.g. issue 5's maskin provisioning saga.
 */
export const allSagas: readonly TaskSaga<any>[] = [projectBootstrapSaga, hostProvisionSaga, hostReleaseSaga, hostPowerSaga, bmcCheckSaga, vmCreateSaga, vmStartSaga, vmStopSaga, vmRebootSaga, vmReconcileSaga, vmDeleteSaga, diskImageRemoveSaga];

export * from "./runtime/index.ts";
