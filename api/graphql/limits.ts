import type {
  DocumentNode,
  FieldNode,
  FragmentDefinitionNode,
  GraphQLError,
  GraphQLField,
  GraphQLNamedType,
  GraphQLSchema,
  OperationDefinitionNode,
  SelectionSetNode,
  ValueNode,
} from "graphql";
import { Kind, getNamedType, isInterfaceType, isObjectType } from "./graphql-js.ts";
import { DEFAULT_FIRST, MAX_FIRST } from "./connections.ts";
import { ClientError } from "./errors.ts";
import { MAX_NODES } from "./resolvers/node.ts";

/**
 * Static limits on what one operation may ask for, checked before anything
 * executes (with the request's variables, so `first: $n` counts as n):
 *
 * - depth: fields nested in fields, at most MAX_DEPTH (10). Three connection
 *   levels through edges (tenants > edges > node > projects > edges > node >
 *   environments > edges > node > id) is exactly 10; `nodes` saves a level each.
 * - cost: every field counts 1, times the page sizes of the connections
 *   around it (`first`, default 20; `nodes(ids:)` counts its ids): an upper
 *   bound on the fields the answer can hold. At most MAX_COST (50 000):
 *   tenants x projects x environments at the default 20 each, with a few
 *   fields, fits; 100 x 100 x 100 does not.
 * - `first` above 100 (MAX_FIRST) and more than 100 ids are refused outright.
 *
 * Introspection (`__schema`, `__type`) is exempt: its size is the schema's, not the data's.
 * Fragments are costed once each (a fragment spread many times is not re-walked).
 */
export const MAX_DEPTH = 10;
export const MAX_COST = 50_000;

interface Measure {
  readonly cost: number;
  readonly depth: number;
}

/** Variables unknown (subscriptions: mercurius does not pass them to hooks): assume the largest page. */
export type Variables = Readonly<Record<string, unknown>> | "unknown";

export function checkLimits(schema: GraphQLSchema, document: DocumentNode, variables: Variables): GraphQLError[] {
  const fragments = new Map<string, FragmentDefinitionNode>();
  for (const definition of document.definitions) {
    if (definition.kind === Kind.FRAGMENT_DEFINITION) fragments.set(definition.name.value, definition);
  }
  const errors: GraphQLError[] = [];
  for (const definition of document.definitions) {
    if (definition.kind !== Kind.OPERATION_DEFINITION) continue;
    const walker = new Walker(schema, fragments, definition, variables, errors);
    const root = operationRoot(schema, definition);
    if (!root) continue;
    const { cost, depth } = walker.selectionSet(definition.selectionSet, root);
    const name = definition.name?.value ?? "anonymous operation";
    if (depth > MAX_DEPTH) {
      errors.push(new ClientError("QUERY_TOO_DEEP", `${name} is ${depth} levels deep; the limit is ${MAX_DEPTH}`, { depth, limit: MAX_DEPTH }));
    }
    if (cost > MAX_COST) {
      errors.push(
        new ClientError("QUERY_TOO_COSTLY", `${name} may return up to ${cost} fields; the budget is ${MAX_COST}: ask for smaller pages`, {
          cost,
          limit: MAX_COST,
        }),
      );
    }
  }
  return errors;
}

function operationRoot(schema: GraphQLSchema, operation: OperationDefinitionNode): GraphQLNamedType | null | undefined {
  switch (operation.operation) {
    case "query":
      return schema.getQueryType();
    case "mutation":
      return schema.getMutationType();
    case "subscription":
      return schema.getSubscriptionType();
  }
}

class Walker {
  private readonly fragmentMeasures = new Map<string, Measure>();
  private readonly visiting = new Set<string>();

  constructor(
    private readonly schema: GraphQLSchema,
    private readonly fragments: ReadonlyMap<string, FragmentDefinitionNode>,
    private readonly operation: OperationDefinitionNode,
    private readonly variables: Variables,
    private readonly errors: GraphQLError[],
  ) {}

  /** Cost and depth of a selection set, relative to the field that owns it. */
  selectionSet(selectionSet: SelectionSetNode, parent: GraphQLNamedType): Measure {
    let cost = 0;
    let depth = 0;
    for (const selection of selectionSet.selections) {
      let measure: Measure;
      switch (selection.kind) {
        case Kind.FIELD:
          measure = this.field(selection, parent);
          break;
        case Kind.INLINE_FRAGMENT: {
          const type = selection.typeCondition ? this.schema.getType(selection.typeCondition.name.value) : parent;
          measure = type ? this.selectionSet(selection.selectionSet, type) : { cost: 0, depth: 0 };
          break;
        }
        case Kind.FRAGMENT_SPREAD:
          measure = this.fragment(selection.name.value);
          break;
      }
      cost += measure.cost;
      depth = Math.max(depth, measure.depth);
    }
    return { cost, depth };
  }

  private fragment(name: string): Measure {
    const known = this.fragmentMeasures.get(name);
    if (known) return known;
    const fragment = this.fragments.get(name);
    // Unknown or cyclic fragments are validation errors; reported there, not here.
    if (!fragment || this.visiting.has(name)) return { cost: 0, depth: 0 };
    this.visiting.add(name);
    const type = this.schema.getType(fragment.typeCondition.name.value);
    const measure = type ? this.selectionSet(fragment.selectionSet, type) : { cost: 0, depth: 0 };
    this.visiting.delete(name);
    this.fragmentMeasures.set(name, measure);
    return measure;
  }

  private field(node: FieldNode, parent: GraphQLNamedType): Measure {
    const name = node.name.value;
    if (name === "__schema" || name === "__type") return { cost: 0, depth: 0 };
    if (name === "__typename") return { cost: 0, depth: 1 };
    const definition = fieldOf(parent, name);
    if (!definition) return { cost: 1, depth: 1 };
    const child = getNamedType(definition.type);
    const inner = node.selectionSet ? this.selectionSet(node.selectionSet, child) : { cost: 0, depth: 0 };
    return { cost: 1 + this.multiplier(node, definition, child) * inner.cost, depth: 1 + inner.depth };
  }

  /** How many times the field's selection can repeat in the answer. */
  private multiplier(node: FieldNode, definition: GraphQLField<unknown, unknown>, child: GraphQLNamedType): number {
    if (child.name.endsWith("Connection")) {
      const first = this.argument(node, "first");
      const value = first === undefined ? DEFAULT_FIRST : first === "unknown" ? MAX_FIRST : first;
      if (typeof value === "number" && value > MAX_FIRST) {
        this.errors.push(new ClientError("BAD_USER_INPUT", `first must be between 0 and ${MAX_FIRST}`, { argument: "first", field: node.name.value }));
      }
      return typeof value === "number" && Number.isFinite(value) ? Math.max(0, Math.min(value, MAX_FIRST)) : DEFAULT_FIRST;
    }
    if (definition.name === "nodes" && definition.args.some((arg) => arg.name === "ids")) {
      const ids = this.argument(node, "ids");
      const count = ids === "unknown" ? MAX_NODES : Array.isArray(ids) ? ids.length : 1;
      if (count > MAX_NODES) {
        this.errors.push(new ClientError("BAD_USER_INPUT", `nodes takes at most ${MAX_NODES} ids`, { argument: "ids" }));
      }
      return Math.min(count, MAX_NODES);
    }
    return 1;
  }

  /** An argument's value as far as it can be known before execution; undefined when absent, "unknown" when unknowable. */
  private argument(node: FieldNode, name: string): unknown {
    const argument = node.arguments?.find((arg) => arg.name.value === name);
    if (!argument) return undefined;
    return this.value(argument.value);
  }

  private value(value: ValueNode): unknown {
    switch (value.kind) {
      case Kind.INT:
        return Number(value.value);
      case Kind.LIST:
        return value.values.map((item) => this.value(item));
      case Kind.NULL:
        return undefined;
      case Kind.VARIABLE: {
        const name = value.name.value;
        if (this.variables !== "unknown" && Object.hasOwn(this.variables, name) && this.variables[name] !== undefined) {
          const given = this.variables[name];
          return given === null ? undefined : given;
        }
        const declared = this.operation.variableDefinitions?.find((v) => v.variable.name.value === name);
        if (declared?.defaultValue) return this.value(declared.defaultValue);
        return this.variables === "unknown" ? "unknown" : undefined;
      }
      default:
        return "unknown";
    }
  }
}

function fieldOf(parent: GraphQLNamedType, name: string): GraphQLField<unknown, unknown> | undefined {
  if (isObjectType(parent) || isInterfaceType(parent)) return parent.getFields()[name];
  return undefined;
}
