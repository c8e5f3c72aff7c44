import { describe, it } from "vitest";
import { EventStoreDbEventStore } from "../../../adapters/eventstore/eventstoredb/store.ts";
import { eventStoreDbChecks } from "./checks.ts";

/** The same checks against a real EventStoreDB/KurrentDB, when EVENTSTORE_URL names one. */
const url = process.env.EVENTSTORE_URL?.trim();
if (url) {
  eventStoreDbChecks(`EventStoreDbEventStore (live server at ${url})`, (options = {}) => new EventStoreDbEventStore({ connectionString: url, ...options }));
} else {
  describe("EventStoreDbEventStore (live server)", () => {
    it.skip("needs EVENTSTORE_URL, e.g. esdb://localhost:2113?tls=false", () => {});
  });
}
