import "@xyflow/react/dist/style.css";

import {
  addEdge,
  Background,
  type Connection,
  Controls,
  type Edge,
  Handle,
  type Node,
  type NodeProps,
  Position,
  ReactFlow,
  useEdgesState,
  useNodesState,
} from "@xyflow/react";
import { useMemo, useState } from "react";

import { type PageProps, useLoad } from "../App";
import { type CanvasNode, type ComponentInfo, type JobDraft, problems, toJob, toYaml } from "../jobspec";
import { fields, parse } from "../schema";

type Data = { comp: CanvasNode; info?: ComponentInfo };

function ComponentNode({ data }: NodeProps<Node<Data>>) {
  const outs = data.info?.outputs ?? [];
  return (
    <div style={{ border: "1px solid #2f5596", borderRadius: 6, background: "#eef3fb", padding: "6px 10px", minWidth: 140 }}>
      <Handle type="target" position={Position.Top} />
      <b>{data.comp.id}</b>
      <div style={{ fontSize: 12 }}>{data.comp.type}</div>
      {outs.map((o, i) => (
        <Handle key={o} id={o} type="source" position={Position.Bottom}
          style={{ left: `${((i + 1) * 100) / (outs.length + 1)}%` }} title={o} />
      ))}
    </div>
  );
}

const nodeTypes = { component: ComponentNode };

export function Builder({ api, t, report, onSubmitted }: PageProps & { onSubmitted: () => void }) {
  const [catalog] = useLoad(async () => {
    const list = await api.get<ComponentInfo[]>("/v1/components");
    return Object.fromEntries(list.map((c) => [c.type, c]));
  }, report);
  const [nodes, setNodes, onNodesChange] = useNodesState<Node<Data>>([]);
  const [edges, setEdges, onEdgesChange] = useEdgesState<Edge>([]);
  const [name, setName] = useState("job");
  const [parties, setParties] = useState("");
  const [selected, setSelected] = useState<string>();
  const [found, setFound] = useState<string[]>();
  const [texts, setTexts] = useState<Record<string, Record<string, string>>>({});

  const partyList = parties.split(",").map((x) => x.trim()).filter(Boolean);
  const draft: JobDraft = useMemo(() => ({
    name,
    parties: partyList,
    nodes: nodes.map((n) => n.data.comp),
    edges: edges.map((e) => ({ source: e.source, output: e.sourceHandle ?? "", target: e.target })),
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }), [name, parties, nodes, edges]);

  const add = (type: string) => {
    let i = 1;
    while (nodes.some((n) => n.id === `${type}${i}`)) i++;
    const id = `${type}${i}`;
    const comp: CanvasNode = { id, type, params: {}, datasets: {} };
    setNodes((ns) => [...ns, { id, type: "component", position: { x: 40 + 150 * (ns.length % 4), y: 30 + 120 * ns.length }, data: { comp, info: catalog?.[type] } }]);
    setSelected(id);
  };
  const update = (id: string, f: (c: CanvasNode) => CanvasNode) =>
    setNodes((ns) => ns.map((n) => (n.id === id ? { ...n, data: { ...n.data, comp: f(n.data.comp) } } : n)));
  const onConnect = (c: Connection) => setEdges((es) => addEdge({ ...c, label: c.sourceHandle ?? "" }, es));

  const check = (): boolean => {
    // the typed parameter values first: a field that does not parse is a problem too
    const errs: string[] = [];
    for (const n of nodes) {
      for (const f of fields(n.data.info?.params ?? {})) {
        const txt = texts[n.id]?.[f.name];
        if (txt === undefined) continue;
        const r = parse(f, txt);
        if (r.error) errs.push(`${n.id}: ${r.error}`);
      }
    }
    const all = [...errs, ...problems(draft, catalog ?? {})];
    setFound(all);
    return all.length === 0;
  };
  const submit = async () => {
    if (!check()) return;
    try {
      await api.post("/v1/jobs", { spec: toJob(draft, catalog ?? {}) });
      onSubmitted();
    } catch (e) {
      report(e);
    }
  };
  const download = () => {
    const blob = new Blob([toYaml(toJob(draft, catalog ?? {}))], { type: "text/yaml" });
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = `${name || "job"}.yaml`;
    a.click();
  };
  const sel = nodes.find((n) => n.id === selected)?.data;
  const fed = sel ? edges.some((e) => e.target === sel.comp.id && e.sourceHandle !== "model") : false;
  const selParties = sel?.comp.parties ?? partyList;

  return (
    <>
      <section className="row">
        <label>{t("name")}<input name="job-name" value={name} onChange={(e) => setName(e.target.value)} /></label>
        <label>{t("parties")}<input name="job-parties" size={30} placeholder="bank,telecom" value={parties} onChange={(e) => setParties(e.target.value)} /></label>
        <button className="act" onClick={() => check()}>{t("validate")}</button>
        <button className="act" onClick={download}>{t("saveYaml")}</button>
        <button className="act" onClick={() => void submit()}>{t("submit")}</button>
      </section>
      {found && (found.length ? <div className="error" role="alert">{found.join("\n")}</div> : <p className="ok">✓</p>)}
      <div className="builder">
        <section className="palette" aria-label={t("palette")}>
          <h2>{t("palette")}</h2>
          {Object.values(catalog ?? {}).map((c) => (
            <button key={c.type} className="act" title={c.summary} onClick={() => add(c.type)}>{c.type}</button>
          ))}
        </section>
        <div className="canvas" data-testid="canvas">
          <ReactFlow nodes={nodes} edges={edges} nodeTypes={nodeTypes} onNodesChange={onNodesChange}
            onEdgesChange={onEdgesChange} onConnect={onConnect} onNodeClick={(_, n) => setSelected(n.id)}
            defaultViewport={{ x: 0, y: 0, zoom: 0.8 }}>
            <Background />
            <Controls />
          </ReactFlow>
        </div>
        <section aria-label={t("params")} style={{ overflow: "auto" }}>
          {sel && (
            <>
              <h2>{sel.comp.id} ({sel.comp.type})</h2>
              <label style={{ display: "block" }}>{t("parties")}
                <input name={`parties-${sel.comp.id}`} value={selParties.join(",")}
                  onChange={(e) => update(sel.comp.id, (c) => ({ ...c,
                    parties: e.target.value.split(",").map((x) => x.trim()).filter(Boolean) }))} />
              </label>
              {!fed && selParties.map((p) => (
                <div className="row" key={p}>
                  <label>{p}: {t("data")}<input name={`ds-${sel.comp.id}-${p}`} value={sel.comp.datasets[p]?.dataset ?? ""}
                    onChange={(e) => update(sel.comp.id, (c) => ({ ...c, datasets: { ...c.datasets, [p]: { ...c.datasets[p], dataset: e.target.value } } }))} /></label>
                  <label>{t("idColumn")}<input name={`id-${sel.comp.id}-${p}`} size={10} value={sel.comp.datasets[p]?.id ?? ""}
                    onChange={(e) => update(sel.comp.id, (c) => ({ ...c, datasets: { ...c.datasets, [p]: { ...c.datasets[p], id: e.target.value } } }))} /></label>
                </div>
              ))}
              {(sel.info?.outputs ?? []).map((o) => {
                const recv = sel.comp.receivers?.[o] ?? selParties;
                return (
                  <div key={o} style={{ marginBottom: 6 }}>
                    <label>{o}: {t("receivers")}
                      <input name={`r-${sel.comp.id}-${o}`} value={recv.join(",")}
                        onChange={(e) => update(sel.comp.id, (c) => ({ ...c, receivers: { ...c.receivers,
                          [o]: e.target.value.split(",").map((x) => x.trim()).filter(Boolean) } }))} />
                    </label>
                    {recv.map((p) => (
                      <label key={p} style={{ display: "block" }}>{o}: {p} {t("columns")}
                        <input name={`c-${sel.comp.id}-${o}-${p}`} value={(sel.comp.columns?.[o]?.[p] ?? []).join(",")}
                          onChange={(e) => update(sel.comp.id, (c) => ({ ...c, columns: { ...c.columns, [o]: {
                            ...c.columns?.[o], [p]: e.target.value.split(",").map((x) => x.trim()).filter(Boolean) } } }))} />
                      </label>
                    ))}
                  </div>
                );
              })}
              <h2>{t("params")}</h2>
              {fields(sel.info?.params ?? {}).map((f) => (
                <label key={f.name} style={{ display: "block", marginBottom: 6 }} title={f.description}>
                  {f.name}{f.required ? " *" : ""}
                  <input name={`p-${sel.comp.id}-${f.name}`} style={{ width: "95%" }}
                    placeholder={f.default === undefined ? f.kind : JSON.stringify(f.default)}
                    value={texts[sel.comp.id]?.[f.name] ?? ""}
                    onChange={(e) => {
                      const txt = e.target.value;
                      setTexts((x) => ({ ...x, [sel.comp.id]: { ...x[sel.comp.id], [f.name]: txt } }));
                      const r = parse(f, txt);
                      if (!r.error) update(sel.comp.id, (c) => ({ ...c, params: { ...c.params, [f.name]: r.value } }));
                    }} />
                </label>
              ))}
            </>
          )}
        </section>
      </div>
    </>
  );
}
