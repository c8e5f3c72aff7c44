/** Sentral inventory commands: datacenters (one stream each), the MAC registry, the file import. */
export { datacenterHandler, executeDatacenterCommand, executeMacRegistryCommand, macRegistryHandler } from "./handlers.ts";
export { decideBatch, executeBatch, type BatchOutcome } from "./batch.ts";
export {
  approveHostIdentityChange,
  checkDocument,
  importInventory,
  InventoryImportError,
  loadDatacenter,
  overcommitOf,
  syncRegistry,
  type ImportDeps,
  type ImportError,
  type ImportReport,
  type ItemKind,
  type ItemOutcome,
  type ReportItem,
} from "./import.ts";
export type * from "./document.ts";
