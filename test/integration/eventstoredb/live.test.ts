import { EventStoreDbEventStore } from "../../../adapters/eventstore/eventstoredb/store.ts";
import { eventStoreDbChecks } from "./checks.ts";

/**
 * The same checks against a real EventStoreDB/KurrentDB. vitest.config.ts only
 * includes this file when EVENTSTORE_URL names a server (none can be installed here).
 */
const url = process.env.EVENTSTORE_URL!.trim();
eventStoreDbChecks(`EventStoreDbEventStore (live server at ${url})`, (options = {}) => new EventStoreDbEventStore({ connectionString: url, ...options }));
