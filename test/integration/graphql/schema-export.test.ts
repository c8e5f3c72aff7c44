import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { createSchema } from "../../../api/graphql/schema.ts";
import { SCHEMA_FILE, renderSchema } from "../../../scripts/export-schema.ts";

describe("api/schema.graphql", () => {
  it("is the SDL as it stands (run `npm run schema:export` after changing api/graphql/schema/*.graphql)", () => {
    expect(readFileSync(SCHEMA_FILE, "utf8")).toBe(renderSchema());
  });

  it("every field of Query, Mutation and Subscription has a resolver", () => {
    const schema = createSchema();
    const missing: string[] = [];
    for (const type of [schema.getQueryType(), schema.getMutationType(), schema.getSubscriptionType()]) {
      for (const field of Object.values(type!.getFields())) {
        const resolved = type === schema.getSubscriptionType() ? field.subscribe : field.resolve;
        if (!resolved) missing.push(`${type!.name}.${field.name}`);
      }
    }
    expect(missing).toEqual([]);
  });
});
