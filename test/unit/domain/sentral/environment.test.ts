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

const withProjects = [tenantCreated(), projectCreated(P1, "web"), projectCreated(P2, "api")];

describe("CreateEnvironment", () => {
  it("creates an environment in an active project", () => {
    const { state } = spec
      .given(withProjects)
      .when({ type: "CreateEnvironment", tenantId: T, projectId: P1, environmentId: E1, name: "prod" })
      .then([environmentCreated(E1, "prod", P1)]);
    expect(state.status !== "absent" && state.projects.get(P1)?.environments.get(E1)).toEqual({
      environmentId: E1,
      projectId: P1,
      name: "prod",
      archived: false,
    });
  });

  it("refuses a name an active environment of the same project holds", () => {
    spec
      .given([...withProjects, environmentCreated(E1, "prod", P1)])
      .when({ type: "CreateEnvironment", tenantId: T, projectId: P1, environmentId: E2, name: "prod" })
      .thenFails("environment_name_taken", { projectId: P1, name: "prod", environmentId: E1 });
  });

  it("allows the same name in another project", () => {
    spec
      .given([...withProjects, environmentCreated(E1, "prod", P1)])
      .when({ type: "CreateEnvironment", tenantId: T, projectId: P2, environmentId: E2, name: "prod" })
      .then([environmentCreated(E2, "prod", P2)]);
  });

  it("allows the name of an archived environment to be used again", () => {
    spec
      .given([...withProjects, environmentCreated(E1, "prod", P1), environmentArchived(E1, P1)])
      .when({ type: "CreateEnvironment", tenantId: T, projectId: P1, environmentId: E2, name: "prod" })
      .then([environmentCreated(E2, "prod", P1)]);
  });

  it("is a no-op when repeated with the same id and content", () => {
    spec
      .given([...withProjects, environmentCreated(E1, "prod", P1)])
      .when({ type: "CreateEnvironment", tenantId: T, projectId: P1, environmentId: E1, name: "prod" })
      .thenNothing();
  });

  it("refuses an environment id already used, in this project or another", () => {
    const given = [...withProjects, environmentCreated(E1, "prod", P1)];
    spec.given(given).when({ type: "CreateEnvironment", tenantId: T, projectId: P1, environmentId: E1, name: "dev" }).thenFails("environment_exists", { projectId: P1 });
    spec.given(given).when({ type: "CreateEnvironment", tenantId: T, projectId: P2, environmentId: E1, name: "prod" }).thenFails("environment_exists", { projectId: P1 });
  });

  it("refuses an archived project", () => {
    spec
      .given([...withProjects, projectArchived(P1)])
      .when({ type: "CreateEnvironment", tenantId: T, projectId: P1, environmentId: E1, name: "prod" })
      .thenFails("project_archived", { projectId: P1 });
  });

  it("refuses an unknown project", () => {
    spec.given([tenantCreated()]).when({ type: "CreateEnvironment", tenantId: T, projectId: P1, environmentId: E1, name: "prod" }).thenFails("project_not_found", { projectId: P1 });
  });

  it("refuses a bad name", () => {
    spec
      .given(withProjects)
      .when({ type: "CreateEnvironment", tenantId: T, projectId: P1, environmentId: E1, name: "Prod" })
      .thenFails("invalid_name", { kind: "environment" });
  });
});

describe("ArchiveEnvironment", () => {
  it("archives an active environment", () => {
    const { state } = spec
      .given([...withProjects, environmentCreated(E1, "prod", P1)])
      .when({ type: "ArchiveEnvironment", tenantId: T, projectId: P1, environmentId: E1 })
      .then([environmentArchived(E1, P1)]);
    expect(state.status !== "absent" && state.projects.get(P1)?.environments.get(E1)?.archived).toBe(true);
  });

  it("is a no-op on an archived environment, also once its project is archived", () => {
    const archived = [...withProjects, environmentCreated(E1, "prod", P1), environmentArchived(E1, P1)];
    spec.given(archived).when({ type: "ArchiveEnvironment", tenantId: T, projectId: P1, environmentId: E1 }).thenNothing();
    spec.given([...archived, projectArchived(P1)]).when({ type: "ArchiveEnvironment", tenantId: T, projectId: P1, environmentId: E1 }).thenNothing();
  });

  it("refuses an unknown environment, or one that belongs to another project", () => {
    spec.given(withProjects).when({ type: "ArchiveEnvironment", tenantId: T, projectId: P1, environmentId: E1 }).thenFails("environment_not_found", { environmentId: E1 });
    spec
      .given([...withProjects, environmentCreated(E1, "prod", P2)])
      .when({ type: "ArchiveEnvironment", tenantId: T, projectId: P1, environmentId: E1 })
      .thenFails("environment_not_found", { projectId: P1, environmentId: E1 });
  });

  it("refuses an unknown project", () => {
    spec.given([tenantCreated()]).when({ type: "ArchiveEnvironment", tenantId: T, projectId: P1, environmentId: E1 }).thenFails("project_not_found");
  });
});
