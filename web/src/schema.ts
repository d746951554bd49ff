// Forms from a component's parameter schema (pydantic's JSON schema): one field per
// property, typed, with its default, and the value the user typed parsed and checked.
import type { JsonSchema } from "./jobspec";

export type FieldKind = "string" | "number" | "integer" | "boolean" | "enum" | "json";

export interface Field {
  name: string;
  kind: FieldKind;
  required: boolean;
  default?: unknown;
  options?: unknown[];
  description?: string;
}

function kindOf(s: JsonSchema): { kind: FieldKind; options?: unknown[] } {
  const alts = s.anyOf?.filter((a) => a.type !== "null") ?? [s];
  const one = alts.length === 1 ? alts[0] : undefined;
  if (one?.enum) return { kind: "enum", options: one.enum };
  switch (one?.type) {
    case "string":
      return { kind: "string" };
    case "number":
      return { kind: "number" };
    case "integer":
      return { kind: "integer" };
    case "boolean":
      return { kind: "boolean" };
    default:
      return { kind: "json" }; // objects, lists and unions: typed as JSON
  }
}

export function fields(schema: JsonSchema): Field[] {
  const required = new Set(schema.required ?? []);
  return Object.entries(schema.properties ?? {}).map(([name, s]) => ({
    name,
    ...kindOf(s),
    required: required.has(name),
    default: s.default,
    description: s.description ?? s.title,
  }));
}

/** The typed value of what was typed, or an error message. */
export function parse(field: Field, text: string): { value?: unknown; error?: string } {
  const t = text.trim();
  if (t === "") {
    return field.required ? { error: `${field.name} is required` } : { value: undefined };
  }
  switch (field.kind) {
    case "integer":
      return /^-?\d+$/.test(t) ? { value: Number(t) } : { error: `${field.name}: a whole number` };
    case "number":
      return Number.isFinite(Number(t)) ? { value: Number(t) } : { error: `${field.name}: a number` };
    case "boolean":
      return t === "true" || t === "false"
        ? { value: t === "true" }
        : { error: `${field.name}: true or false` };
    case "enum":
      return field.options?.map(String).includes(t)
        ? { value: field.options.find((o) => String(o) === t) }
        : { error: `${field.name}: one of ${field.options?.join(", ")}` };
    case "json":
      try {
        return { value: JSON.parse(t) };
      } catch {
        return { error: `${field.name}: JSON (e.g. {"a": 1} or ["x"])` };
      }
    default:
      return { value: t };
  }
}
