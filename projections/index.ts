/**
 * Read projections: the public surface for the composition root (`dv up`,
 * `dv worker`), the API and `npm run migrate`.
 */
import type { AnyProjection } from "./projection.ts";
import { tenancyProjection } from "./sentral/tenancy.ts";
import { grantsProjection } from "./identitet/grants.ts";
import { tasksProjection } from "./sentral/tasks.ts";
import { inventoryProjection } from "./sentral/inventory.ts";
import { maskinHostsProjection } from "./maskin/hosts.ts";
import { maskinVmsProjection } from "./maskin/vms.ts";
import { maskinImagesProjection } from "./maskin/images.ts";

/** Every projection the platform serves, in the order setup creates them. */
export const allProjections: readonly AnyProjection[] = [tenancyProjection, grantsProjection, tasksProjection, inventoryProjection, maskinHostsProjection, maskinVmsProjection, maskinImagesProjection];

export { tenancyProjection } from "./sentral/tenancy.ts";
export { grantsProjection } from "./identitet/grants.ts";
export { tasksProjection } from "./sentral/tasks.ts";
export { inventoryProjection } from "./sentral/inventory.ts";
export { maskinHostsProjection } from "./maskin/hosts.ts";
export { maskinVmsProjection } from "./maskin/vms.ts";
export { maskinImagesProjection } from "./maskin/images.ts";
export { ProjectionRunner, type ProjectionRunnerOptions, type ProjectionState, type ProjectionStatus } from "./runner.ts";
export { rebuildProjection, type RebuildOptions, type RebuildProgress, type RebuildResult } from "./rebuild.ts";
export { projectionChecksum, sameChecksum, type ProjectionChecksum, type TableChecksum } from "./checksum.ts";
export { ensureProjectionSchemas, type SetupAction, type SetupResult } from "./setup.ts";
export { defineProjection, liveSchema, type AnyProjection, type Projection, type ProjectionContext } from "./projection.ts";
export {
  CheckpointMovedError,
  ChecksumMismatchError,
  ProjectionNotSetUpError,
  ProjectionWaitTimeoutError,
  RebuildInProgressError,
  UnknownProjectionError,
} from "./errors.ts";
