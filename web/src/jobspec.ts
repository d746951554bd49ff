// The job builder's canvas as a Rainbridge job: nodes are components, an edge carries one
// component's output into another's inputs (for every party that receives it).
import YAML from "yaml";

export interface CanvasNode {
  id: string;
  type: string;
  params: Record<string, unknown>;
  /** per party: its dataset and ID column, for a node no edge feeds */
  datasets: Record<string, { dataset: string; id?: string }>;
  /** parties of this component (default: the job's) */
  parties?: string[];
  /** per output: who receives it (default: the component's parties) */
  receivers?: Record<string, string[]>;
  /** per output and receiver: that receiver's own columns added to it (e.g. psi) */
  columns?: Record<string, Record<string, string[]>>;
}

export interface CanvasEdge {
  source: string;
  output: string;
  target: string;
}

export interface ComponentInfo {
  type: string;
  summary: string;
  outputs: string[];
  params: JsonSchema;
}

export interface JsonSchema {
  properties?: Record<string, JsonSchema>;
  required?: string[];
  type?: string;
  enum?: unknown[];
  default?: unknown;
  anyOf?: JsonSchema[];
  title?: string;
  description?: string;
}

export interface JobDraft {
  name: string;
  parties: string[];
  nodes: CanvasNode[];
  edges: CanvasEdge[];
}

const ID = /^[A-Za-z][A-Za-z0-9_-]{0,63}$/;

/** Problems that stop the draft from being a job (empty: none). */
export function problems(draft: JobDraft, catalog: Record<string, ComponentInfo>): string[] {
  const out: string[] = [];
  if (!ID.test(draft.name.replace(/[ .]/g, "_"))) out.push("the job needs a name");
  if (draft.parties.length < 1) out.push("choose the parties");
  const ids = new Set<string>();
  for (const n of draft.nodes) {
    if (!ID.test(n.id)) out.push(`component id ${JSON.stringify(n.id)}: letters, digits, - and _`);
    if (ids.has(n.id)) out.push(`component id ${n.id} is used twice`);
    ids.add(n.id);
    const info = catalog[n.type];
    if (!info) {
      out.push(`${n.id}: unknown component ${n.type}`);
      continue;
    }
    for (const r of info.params.required ?? []) {
      if (n.params[r] === undefined || n.params[r] === "") out.push(`${n.id}: ${r} is required`);
    }
    const fed = draft.edges.some((e) => e.target === n.id && e.output !== "model");
    for (const p of n.parties ?? draft.parties) {
      if (!fed && !n.datasets[p]?.dataset) out.push(`${n.id}: ${p} needs a dataset`);
    }
  }
  for (const e of draft.edges) {
    const src = draft.nodes.find((n) => n.id === e.source);
    if (!src || !ids.has(e.target)) out.push(`an edge joins a missing component`);
    else if (!catalog[src.type]?.outputs.includes(e.output))
      out.push(`${src.id} has no output ${e.output}`);
  }
  if (order(draft) === null) out.push("the components form a cycle");
  return out;
}

/** Components in an order where every edge goes forward, or null for a cycle. */
export function order(draft: JobDraft): CanvasNode[] | null {
  const incoming = new Map(draft.nodes.map((n) => [n.id, 0]));
  for (const e of draft.edges) incoming.set(e.target, (incoming.get(e.target) ?? 0) + 1);
  const ready = draft.nodes.filter((n) => (incoming.get(n.id) ?? 0) === 0);
  const out: CanvasNode[] = [];
  while (ready.length) {
    const n = ready.shift()!;
    out.push(n);
    for (const e of draft.edges.filter((x) => x.source === n.id)) {
      const left = (incoming.get(e.target) ?? 0) - 1;
      incoming.set(e.target, left);
      if (left === 0) ready.push(draft.nodes.find((x) => x.id === e.target)!);
    }
  }
  return out.length === draft.nodes.length ? out : null;
}

/** The job (as the node's API and `rainbridge job submit` take it). */
export function toJob(draft: JobDraft, catalog: Record<string, ComponentInfo>): Record<string, unknown> {
  const nodes = order(draft) ?? draft.nodes;
  return {
    name: draft.name,
    parties: draft.parties,
    components: nodes.map((n) => {
      const parties = n.parties ?? draft.parties;
      const feeds = draft.edges.filter((e) => e.target === n.id);
      const inputs: Record<string, unknown> = {};
      for (const p of parties) {
        // the first feeding output this party receives (others, e.g. a model, are
        // referenced by the component's parameters)
        const data = feeds.filter((e) => e.output !== "model"); // a model is named in params
        const feed =
          data.find((e) => receiversOf(draft, e.source, e.output).includes(p)) ?? data[0];
        if (feed) inputs[p] = { from: `${feed.source}.${feed.output}` };
        else {
          const d = n.datasets[p];
          inputs[p] = d.id ? { dataset: d.dataset, id: d.id } : { dataset: d.dataset };
        }
      }
      const outputs: Record<string, unknown> = {};
      for (const o of catalog[n.type]?.outputs ?? []) {
        const cols = Object.fromEntries(
          Object.entries(n.columns?.[o] ?? {}).filter(([, c]) => c.length > 0),
        );
        outputs[o] = {
          receivers: n.receivers?.[o] ?? parties,
          ...(Object.keys(cols).length ? { columns: cols } : {}),
        };
      }
      const params = Object.fromEntries(
        Object.entries(n.params).filter(([, v]) => v !== undefined && v !== ""),
      );
      return { id: n.id, type: n.type, inputs, params, outputs };
    }),
  };
}

function receiversOf(draft: JobDraft, id: string, output: string): string[] {
  const n = draft.nodes.find((x) => x.id === id);
  return n?.receivers?.[output] ?? n?.parties ?? draft.parties;
}

export function toYaml(job: Record<string, unknown>): string {
  return YAML.stringify(job);
}
