import { ClientError } from "../errors.ts";
import { fromGlobalId } from "../ids.ts";
import type { GraphqlContext } from "../context.ts";
import { environmentView, projectView, tenantView, type NodeView } from "../views.ts";
import { visibleEnvironment, visibleProject, visibleTenant } from "./lookup.ts";
import { taskView, visibleTask, type TaskView } from "./tasks.ts";
import type { ResolverMap } from "./types.ts";

export const MAX_NODES = 100;

/** Any id this API did not make, any object that is gone, any object the actor may not see: null alike. */
async function nodeById(context: GraphqlContext, id: string): Promise<NodeView | TaskView | null> {
  const key = fromGlobalId(id);
  if (!key) return null;
  switch (key.type) {
    case "Tenant": {
      const row = await visibleTenant(context, key.tenantId);
      return row ? tenantView(row) : null;
    }
    case "Project": {
      const row = await visibleProject(context, key.tenantId, key.projectId);
      return row ? projectView(row) : null;
    }
    case "Environment": {
      const row = await visibleEnvironment(context, key.tenantId, key.projectId, key.environmentId);
      return row ? environmentView(row) : null;
    }
    case "Task": {
      const row = await visibleTask(context, key.taskId);
      return row ? taskView(row) : null;
    }
  }
}

export const nodeResolvers: ResolverMap = {
  Query: {
    node: (_root: unknown, args: { id: string }, context: GraphqlContext) => nodeById(context, args.id),
    nodes: (_root: unknown, args: { ids: readonly string[] }, context: GraphqlContext) => {
      if (args.ids.length > MAX_NODES) throw new ClientError("BAD_USER_INPUT", `nodes takes at most ${MAX_NODES} ids`, { argument: "ids" });
      return Promise.all(args.ids.map((id) => nodeById(context, id)));
    },
  },
};
