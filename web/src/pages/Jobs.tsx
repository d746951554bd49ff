import { BarChart, LineChart } from "echarts/charts";
import { GridComponent, TitleComponent, TooltipComponent } from "echarts/components";
import * as echarts from "echarts/core";
import { CanvasRenderer } from "echarts/renderers";
import "@xyflow/react/dist/style.css";

import { ReactFlow } from "@xyflow/react";
import { useEffect, useMemo, useRef, useState } from "react";

import { type PageProps, useLoad } from "../App";
import { JobTable } from "./Overview";

echarts.use([LineChart, BarChart, GridComponent, TitleComponent, TooltipComponent, CanvasRenderer]);

interface Job { id: string; name: string; status: string; parties: string[]; progress?: Record<string, number>; error?: string | null; decisions?: Record<string, unknown>; spec?: { components?: Array<{ id: string; type: string; inputs: Record<string, { from?: string }> }> } }
interface Result { status: string; error?: string | null; result?: { components?: Record<string, Summary> } }
interface Summary { outputs?: Record<string, { path: string; rows: number; columns: string[] }>; result?: Record<string, number>; [k: string]: unknown }
interface Rows { rows: Array<Record<string, unknown>>; total: number; columns: string[] }

const FINAL = ["succeeded", "failed", "refused", "aborted", "cancelled"];

export function JobsPage({ api, t, report }: PageProps) {
  const [jobs, reload] = useLoad(() => api.get<Job[]>("/v1/jobs?limit=50"), report);
  const [picked, setPicked] = useState<string>();
  return (
    <>
      <section>
        <h2>{t("jobs")} <button className="act" onClick={reload}>{t("refresh")}</button></h2>
        <JobTable jobs={jobs ?? []} t={t} onPick={setPicked} />
      </section>
      {picked && <JobView key={picked} id={picked} api={api} t={t} report={report} onEnded={reload} />}
    </>
  );
}

function JobView({ id, api, t, report, onEnded }: PageProps & { id: string; onEnded: () => void }) {
  const [job, setJob] = useState<Job>();
  const [result, setResult] = useState<Result>();
  const [table, setTable] = useState<{ name: string; data: Rows }>();
  useEffect(() => {
    let live = true;
    const tick = async () => {
      try {
        const j = await api.get<Job>(`/v1/jobs/${id}`);
        if (!live) return;
        setJob(j);
        if (FINAL.includes(j.status)) {
          setResult(await api.get<Result>(`/v1/jobs/${id}/result`));
          onEnded();
        } else setTimeout(() => void tick(), 1000);
      } catch (e) {
        report(e);
      }
    };
    void tick();
    return () => {
      live = false;
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [api, id, report]);
  const open = async (comp: string, out: string) => {
    try {
      setTable({ name: `${comp}.${out}`, data: await api.get<Rows>(`/v1/jobs/${id}/outputs/${comp}/${out}?limit=2000`) });
    } catch (e) {
      report(e);
    }
  };
  const cancel = async () => {
    try {
      await api.post(`/v1/jobs/${id}/cancel`);
    } catch (e) {
      report(e);
    }
  };
  if (!job) return null;
  const comps = result?.result?.components ?? {};
  return (
    <section data-testid="job-view">
      <h2>
        {job.id} · {job.name} · <span className={`status-${job.status}`} data-testid="job-status">{job.status}</span>{" "}
        {!FINAL.includes(job.status) && <button className="act" onClick={() => void cancel()}>{t("cancel")}</button>}
      </h2>
      {job.error && <div className="error" role="alert">{job.error}</div>}
      <Dag job={job} />
      <table>
        <thead><tr><th>component</th><th>progress</th></tr></thead>
        <tbody>
          {Object.entries(job.progress ?? {}).map(([c, f]) => (
            <tr key={c}><td>{c}</td><td><progress max={1} value={Number(f)} /> {Math.round(Number(f) * 100)}%</td></tr>
          ))}
        </tbody>
      </table>
      {result && (
        <>
          <h2>{t("results")}</h2>
          {Object.entries(comps).map(([c, s]) => (
            <div key={c}>
              <b>{c}</b> {s.result && <code>{JSON.stringify(s.result)}</code>}
              {Object.entries(s.outputs ?? {}).map(([o, info]) => (
                <button key={o} className="act" style={{ marginLeft: 8 }} onClick={() => void open(c, o)}>
                  {o} ({info.rows})
                </button>
              ))}
            </div>
          ))}
        </>
      )}
      {table && <OutputView name={table.name} data={table.data} t={t} />}
      {result && Object.keys(comps).some((c) => "model" in (comps[c].outputs ?? {})) && (
        <Models jobId={id} comps={Object.keys(comps).filter((c) => "model" in (comps[c].outputs ?? {}))} api={api} t={t} report={report} />
      )}
      <Events jobId={id} api={api} t={t} report={report} />
    </section>
  );
}

/** An ECharts chart of ``option`` (no animation, so what a screenshot shows is final). */
function Chart({ option, width, height, testid }: { option: Record<string, unknown>; width: number; height: number; testid?: string }) {
  const ref = useRef<HTMLDivElement>(null);
  useEffect(() => {
    if (!ref.current) return;
    const chart = echarts.init(ref.current);
    chart.setOption({ animation: false, ...option });
    return () => chart.dispose();
  }, [option]);
  return <div ref={ref} data-testid={testid} style={{ width, height }} />;
}

/** The job's components as a graph, each coloured by this node's progress in it. */
function Dag({ job }: { job: Job }) {
  const comps = job.spec?.components ?? [];
  const nodes = comps.map((c, i) => {
    const f = Number(job.progress?.[c.id] ?? 0);
    const failed = ["failed", "aborted", "cancelled"].includes(job.status) && f < 1;
    const color = f >= 1 ? "#d6f0df" : failed ? "#fbdada" : f > 0 ? "#fff3cd" : "#eef1f6";
    return {
      id: c.id,
      position: { x: 20 + 190 * i, y: 20 + (i % 2) * 50 },
      data: { label: `${c.id} · ${Math.round(f * 100)}%` },
      style: { background: color, border: "1px solid #8a99b5", fontSize: 12, width: 160 },
      draggable: false,
    };
  });
  const edges = comps.flatMap((c) => {
    const srcs = new Set(Object.values(c.inputs).map((i) => i.from?.split(".")[0]).filter(Boolean) as string[]);
    return [...srcs].map((s) => ({ id: `${s}-${c.id}`, source: s, target: c.id }));
  });
  return (
    <div data-testid="job-dag" style={{ height: 150, border: "1px solid #dde3ee", borderRadius: 6, marginBottom: 8 }}>
      <ReactFlow nodes={nodes} edges={edges} nodesConnectable={false} elementsSelectable={false}
        defaultViewport={{ x: 0, y: 0, zoom: 0.9 }} proOptions={{ hideAttribution: true }} />
    </div>
  );
}

interface ModelPart { id: string; type: string; parties: string[]; part: { features: string[]; weights?: number[]; trees?: Array<{ splits: Record<string, [number, number]> }>; objective?: string } }

function Models({ jobId, comps, api, report }: PageProps & { jobId: string; comps: string[] }) {
  const [models] = useLoad(async () => {
    const got: ModelPart[] = [];
    for (const c of comps) {
      try {
        got.push(await api.get<ModelPart>(`/v1/models/${jobId}.${c}`));
      } catch {
        // a model not registered here (this node received no part of it)
      }
    }
    return got;
  }, report);
  return (
    <>
      {(models ?? []).map((m) => {
        const f = m.part.features;
        const values = m.part.trees
          ? f.map((_, i) => m.part.trees!.reduce((n, tr) => n + Object.values(tr.splits).filter((s) => s[0] === i).length, 0))
          : (m.part.weights ?? []).map((w) => Math.abs(w));
        return (
          <div key={m.id} data-testid="model-card">
            <h2>{m.id} · {m.type} · {m.parties.join(", ")}</h2>
            <Bars labels={f} values={values} title={m.part.trees ? "splits per feature (this party)" : "|weight| per feature (this party)"} />
          </div>
        );
      })}
    </>
  );
}

function Bars({ labels, values, title }: { labels: string[]; values: number[]; title: string }) {
  const option = useMemo(() => ({
    title: { text: title, left: "center", textStyle: { fontSize: 13 } },
    tooltip: {},
    xAxis: { type: "category", data: labels, axisLabel: { rotate: 20 } },
    yAxis: { type: "value" },
    series: [{ type: "bar", data: values }],
  }), [labels, values, title]);
  return <Chart option={option} width={560} height={300} />;
}

interface Event { seq: number; at: string; kind: string; actor: string; detail?: unknown }

function Events({ jobId, api, report }: PageProps & { jobId: string }) {
  const [events, reload] = useLoad(() => api.get<Event[]>(`/v1/events?job_id=${jobId}&limit=200`), report);
  useEffect(() => {
    const timer = setInterval(reload, 2000);
    return () => clearInterval(timer);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, []);
  return (
    <details>
      <summary>log ({events?.length ?? 0})</summary>
      <pre>{(events ?? []).map((e) => `${e.at?.slice(0, 19) ?? ""} ${e.kind} ${e.actor ?? ""}`).join("\n")}</pre>
    </details>
  );
}

function OutputView({ name, data, t }: { name: string; data: Rows; t: PageProps["t"] }) {
  const roc = data.rows.filter((r) => r.metric === "roc");
  return (
    <div>
      <h2>{name} ({data.total})</h2>
      {roc.length > 0 && <Roc points={roc.map((r) => [Number(r.key), Number(r.value)])} title={t("roc")} />}
      <div style={{ maxHeight: 300, overflow: "auto" }}>
        <table>
          <thead><tr>{data.columns.map((c) => <th key={c}>{c}</th>)}</tr></thead>
          <tbody>
            {data.rows.slice(0, 200).map((r, i) => (
              <tr key={i}>{data.columns.map((c) => <td key={c}>{String(r[c] ?? "")}</td>)}</tr>
            ))}
          </tbody>
        </table>
      </div>
    </div>
  );
}

function Roc({ points, title }: { points: Array<[number, number]>; title: string }) {
  const option = useMemo(() => ({
    title: { text: title, left: "center" },
    tooltip: { trigger: "axis" },
    xAxis: { type: "value", min: 0, max: 1, name: "FPR" },
    yAxis: { type: "value", min: 0, max: 1, name: "TPR" },
    series: [
      { type: "line", data: points, showSymbol: false, name: "ROC" },
      { type: "line", data: [[0, 0], [1, 1]], showSymbol: false, lineStyle: { type: "dashed" } },
    ],
  }), [points, title]);
  return <Chart option={option} width={480} height={360} testid="roc-chart" />;
}
