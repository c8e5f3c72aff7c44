/** The maskin worker service (registered on import) and its parts. */
export { BmcAccess, HostNotInInventoryError, type BmcAccessOptions, type OpenedBmc } from "./bmc.ts";
export {
  createMaskinHandlers,
  plan,
  provisioningEvidence,
  toWorkError,
  PowerOperationSchema,
  type PowerOperation,
  type PowerOutput,
  type PowerTookEffectOutput,
  type ProvisioningEvidence,
} from "./handlers.ts";
export { DEFAULT_OBSERVE_INTERVAL_MS, PowerObserver, type ObservationRound, type PowerObserverOptions } from "./observer.ts";
export { DEFAULT_MASKIN_ACK_WAIT_MS, MASKIN_SERVICE, maskinAckWaitMs, openMaskinService } from "./service.ts";
