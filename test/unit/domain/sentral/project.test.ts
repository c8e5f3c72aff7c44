import { describe, expect, it } from "vitest";
import {
  E1,
  E2,
  P1,
  P2,
  T,
  environmentArchived,
  environmentCreated,
  projectArchived,
  projectCreated,
  spec,
  tenantCreated,
} from "./fixtures.ts";

describe("CreateProject", () => {
  it("creates a project in an active tenant", () => {
    const { state } = spec
      .given([tenantCreated()])
      .when({ type: "CreateProject", tenantId: T, projectId: P1, name: "web", description: "the website" })
      .then([projectCreated(P1, "web", "the website")]);
    expect(state.status !== "absent" && state.projects.get(P1)).toMatchObject({ name: "web", archived: false, limits: {} });
  });

  it("records a bootstrap request with the project, in the same append, naming the task and the default environments", () => {
    spec
      .given([tenantCreated()])
      .when({ type: "CreateProject", tenantId: T, projectId: P1, name: "web", bootstrapTaskId: "task-1" })
      .then([
        projectCreated(P1, "web", null),
        { type: "ProjectBootstrapRequested", data: { tenantId: T, projectId: P1, taskId: "task-1", environments: ["dev", "prod"] } },
      ]);
  });

  it("records an absent description as null", () => {
    spec.given([tenantCreated()]).when({ type: "CreateProject", tenantId: T, projectId: P1, name: "web" }).then([projectCreated(P1, "web", null)]);
  });

  it("refuses a name another active project of the tenant holds", () => {
    spec
      .given([tenantCreated(), projectCreated(P1, "web")])
      .when({ type: "CreateProject", tenantId: T, projectId: P2, name: "web" })
      .thenFails("project_name_taken", { name: "web", projectId: P1 });
  });

  it("allows the name of an archived project to be used again", () => {
    spec
      .given([tenantCreated(), projectCreated(P1, "web"), projectArchived(P1)])
      .when({ type: "CreateProject", tenantId: T, projectId: P2, name: "web" })
      .then([projectCreated(P2, "web")]);
  });

  it("is a no-op when repeated with the same id and content (a retry)", () => {
    spec.given([tenantCreated(), projectCreated(P1, "web", "d")]).when({ type: "CreateProject", tenantId: T, projectId: P1, name: "web", description: "d" }).thenNothing();
  });

  it("refuses an existing project id with different content", () => {
    spec
      .given([tenantCreated(), projectCreated(P1, "web")])
      .when({ type: "CreateProject", tenantId: T, projectId: P1, name: "api" })
      .thenFails("project_exists", { projectId: P1, name: "web", archived: false });
  });

  it("refuses to recreate an archived project id, even with the same content", () => {
    spec
      .given([tenantCreated(), projectCreated(P1, "web"), projectArchived(P1)])
      .when({ type: "CreateProject", tenantId: T, projectId: P1, name: "web" })
      .thenFails("project_exists", { archived: true });
  });

  it("refuses a bad name", () => {
    for (const name of ["", "Web", "web_site", "-web", "web-", "a".repeat(64), "wéb"]) {
      spec.given([tenantCreated()]).when({ type: "CreateProject", tenantId: T, projectId: P1, name }).thenFails("invalid_name", { kind: "project", name });
    }
  });
});

describe("ArchiveProject", () => {
  it("archives a project without environments", () => {
    const { state } = spec.given([tenantCreated(), projectCreated()]).when({ type: "ArchiveProject", tenantId: T, projectId: P1 }).then([projectArchived(P1)]);
    expect(state.status !== "absent" && state.projects.get(P1)?.archived).toBe(true);
  });

  it("archives a project whose environments are all archived", () => {
    spec
      .given([tenantCreated(), projectCreated(), environmentCreated(E1), environmentArchived(E1)])
      .when({ type: "ArchiveProject", tenantId: T, projectId: P1 })
      .then([projectArchived(P1)]);
  });

  it("refuses while the project has active environments, naming them", () => {
    spec
      .given([tenantCreated(), projectCreated(), environmentCreated(E1, "prod"), environmentCreated(E2, "dev"), environmentArchived(E2)])
      .when({ type: "ArchiveProject", tenantId: T, projectId: P1 })
      .thenFails("project_has_active_environments", { environments: [{ environmentId: E1, name: "prod" }] });
  });

  it("is a no-op on an archived project", () => {
    spec.given([tenantCreated(), projectCreated(), projectArchived()]).when({ type: "ArchiveProject", tenantId: T, projectId: P1 }).thenNothing();
  });

  it("refuses an unknown project", () => {
    spec.given([tenantCreated()]).when({ type: "ArchiveProject", tenantId: T, projectId: P1 }).thenFails("project_not_found", { projectId: P1 });
  });
});
