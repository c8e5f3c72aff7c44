import { EventStoreDbEventStore } from "../../../adapters/eventstore/eventstoredb/store.ts";
import { describeEventStoreContract } from "../eventstore/contract.ts";
import { FakeEsdbClient } from "./fake-client.ts";

/**
 * The shared contract suite on this adapter: always against the in-memory
 * stand-in of the client (checks the adapter's logic, not ESDB), and against a
 * real server when EVENTSTORE_URL names one.
 */
describeEventStoreContract("eventstoredb (in-memory fake client)", async () => {
  const client = new FakeEsdbClient();
  return {
    async createStore(options) {
      return new EventStoreDbEventStore({ connectionString: "esdb://fake", client: client.asClient(), ...options });
    },
    async dispose() {},
  };
});

const url = process.env.EVENTSTORE_URL?.trim();
if (url) {
  describeEventStoreContract(`eventstoredb (live server at ${url})`, async () => ({
    async createStore(options) {
      return new EventStoreDbEventStore({ connectionString: url, ...options });
    },
    async dispose() {},
  }));
}
