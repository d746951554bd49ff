import { BarChart, LineChart } from "echarts/charts";
import { GridComponent, TitleComponent, TooltipComponent } from "echarts/components";
import * as echarts from "echarts/core";
import { CanvasRenderer } from "echarts/renderers";
import { useEffect, useRef, useState } from "react";

import { type PageProps, useLoad } from "../App";
import { JobTable } from "./Overview";

echarts.use([LineChart, BarChart, GridComponent, TitleComponent, TooltipComponent, CanvasRenderer]);

interface Job { id: string; name: string; status: string; parties: string[]; progress?: Record<string, number>; error?: string | null; decisions?: Record<string, unknown> }
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
    </section>
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
  const ref = useRef<HTMLDivElement>(null);
  useEffect(() => {
    if (!ref.current) return;
    const chart = echarts.init(ref.current);
    chart.setOption({
      animation: false,
      title: { text: title, left: "center" },
      tooltip: { trigger: "axis" },
      xAxis: { type: "value", min: 0, max: 1, name: "FPR" },
      yAxis: { type: "value", min: 0, max: 1, name: "TPR" },
      series: [
        { type: "line", data: points, showSymbol: false, name: "ROC" },
        { type: "line", data: [[0, 0], [1, 1]], showSymbol: false, lineStyle: { type: "dashed" } },
      ],
    });
    return () => chart.dispose();
  }, [points, title]);
  return <div ref={ref} data-testid="roc-chart" style={{ width: 480, height: 360 }} />;
}
