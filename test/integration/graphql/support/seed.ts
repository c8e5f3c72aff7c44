import { expect } from "vitest";
import { actors, type GraphqlHarness } from "./harness.ts";

export const CREATE_TENANT = `mutation($input: CreateTenantInput!) {
  createTenant(input: $input) { __typename ... on TenantPayload { tenant { id tenantId name } position changed } ... on MutationError { code message } }
}`;
export const CREATE_PROJECT = `mutation($input: CreateProjectInput!) {
  createProject(input: $input) { __typename ... on ProjectPayload { project { id projectId name } position changed } ... on MutationError { code message } }
}`;
export const CREATE_ENVIRONMENT = `mutation($input: CreateEnvironmentInput!) {
  createEnvironment(input: $input) { __typename ... on EnvironmentPayload { environment { id environmentId name } position changed } ... on MutationError { code message } }
}`;
export const SET_TENANT_QUOTA = `mutation($input: SetTenantQuotaInput!) {
  setTenantQuota(input: $input) { __typename ... on TenantQuotaPayload { quota { limits { vcpus memoryMiB } } position } ... on MutationError { code message } }
}`;
export const SET_PROJECT_QUOTA = `mutation($input: SetProjectQuotaInput!) {
  setProjectQuota(input: $input) { __typename ... on ProjectQuotaPayload { quota { limits { vcpus memoryMiB } } position } ... on MutationError { code message } }
}`;

const root = actors.platformAdmin();

/** Runs a mutation as platform-admin and insists it succeeded; returns its result object. */
export async function must(h: GraphqlHarness, document: string, input: Record<string, unknown>, actor = root): Promise<any> {
  const response = await h.gql(actor, document, { input });
  expect(response.status, response.raw).toBe(200);
  expect(response.body.errors, response.raw).toBeUndefined();
  const result = Object.values(response.body.data as Record<string, any>)[0];
  expect(result.__typename, response.raw).toMatch(/Payload$/);
  return result;
}

export interface Fixture {
  /** Tenant ids sort as a < b; project ids p1 < p2 < p3; environment ids e1 < e2. */
  readonly a: string;
  readonly b: string;
  readonly p1: string;
  readonly p2: string;
  readonly p3: string;
  readonly e1: string;
  readonly e2: string;
  readonly bp: string;
}

/** Two tenants; three projects in the first, two environments in its first project; one project in the second; quotas. */
export async function seedTenancy(h: GraphqlHarness, prefix: string): Promise<Fixture> {
  const f: Fixture = {
    a: `${prefix}-a`,
    b: `${prefix}-b`,
    p1: `${prefix}-p1`,
    p2: `${prefix}-p2`,
    p3: `${prefix}-p3`,
    e1: `${prefix}-e1`,
    e2: `${prefix}-e2`,
    bp: `${prefix}-bp`,
  };
  await must(h, CREATE_TENANT, { tenantId: f.a, name: `${prefix}-alpha`, displayName: "Alpha AS" });
  await must(h, CREATE_TENANT, { tenantId: f.b, name: `${prefix}-bravo` });
  await must(h, CREATE_PROJECT, { tenantId: f.a, projectId: f.p1, name: "web", description: "the web" });
  await must(h, CREATE_PROJECT, { tenantId: f.a, projectId: f.p2, name: "db" });
  await must(h, CREATE_PROJECT, { tenantId: f.a, projectId: f.p3, name: "ops" });
  await must(h, CREATE_ENVIRONMENT, { tenantId: f.a, projectId: f.p1, environmentId: f.e1, name: "prod" });
  await must(h, CREATE_ENVIRONMENT, { tenantId: f.a, projectId: f.p1, environmentId: f.e2, name: "stage" });
  await must(h, CREATE_PROJECT, { tenantId: f.b, projectId: f.bp, name: "web" });
  await must(h, SET_TENANT_QUOTA, { tenantId: f.a, limits: { vcpus: 100, memoryMiB: 5_000_000_000 } });
  await must(h, SET_PROJECT_QUOTA, { tenantId: f.a, projectId: f.p1, limits: { vcpus: 10 } });
  return f;
}
