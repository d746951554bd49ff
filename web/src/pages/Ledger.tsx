import { useState } from "react";

import { type PageProps, useLoad } from "../App";

interface Entry { entry: { seq: number; at: string; kind: string; actor: string; job: string | null; detail?: unknown } }
interface MeterLine { peer: string; grant_id: string | null; component_type: string; calls: number; rows: number; bytes: number; cpu_seconds: number }

export function LedgerPage({ api, t, report }: PageProps) {
  const [ledger, reload] = useLoad(() => api.get<{ head: string; entries: Entry[] }>("/v1/ledger?limit=500"), report);
  const [meter] = useLoad(() => api.get<{ lines: MeterLine[] }>("/v1/metering"), report);
  const [verified, setVerified] = useState<{ ok: boolean; entries: number; problems: string[] }>();
  const [filter, setFilter] = useState("");
  const verify = async () => {
    try {
      setVerified(await api.get("/v1/ledger/verify"));
    } catch (e) {
      report(e);
    }
  };
  const exportCsv = async () => {
    try {
      const rows = (ledger?.entries ?? []).map((e) => [e.entry.seq, e.entry.at, e.entry.kind, e.entry.actor, e.entry.job ?? ""].join(","));
      const blob = new Blob([["seq,at,kind,actor,job", ...rows].join("\n")], { type: "text/csv" });
      const a = document.createElement("a");
      a.href = URL.createObjectURL(blob);
      a.download = "ledger.csv";
      a.click();
    } catch (e) {
      report(e);
    }
  };
  const shown = (ledger?.entries ?? []).filter((e) => !filter || e.entry.kind.includes(filter) || (e.entry.job ?? "").includes(filter));
  return (
    <>
      <section>
        <h2>{t("ledger")}</h2>
        <div className="row">
          <button className="act" onClick={() => void verify()}>{t("verify")}</button>
          <button className="act" onClick={() => void exportCsv()}>{t("export")}</button>
          <button className="act" onClick={reload}>{t("refresh")}</button>
          <label>filter<input name="ledger-filter" value={filter} onChange={(e) => setFilter(e.target.value)} /></label>
          {verified && (
            <span data-testid="ledger-verified" className={verified.ok ? "ok" : "bad"}>
              {verified.ok ? `✓ ${t("ok")}` : `✗ ${t("broken")}: ${verified.problems.slice(0, 3).join("; ")}`} ({verified.entries})
            </span>
          )}
        </div>
        <div style={{ maxHeight: 420, overflow: "auto" }}>
          <table>
            <thead><tr><th>#</th><th>at</th><th>kind</th><th>actor</th><th>job</th></tr></thead>
            <tbody>
              {shown.map((e) => (
                <tr key={e.entry.seq}><td>{e.entry.seq}</td><td>{e.entry.at.slice(0, 19)}</td><td>{e.entry.kind}</td><td>{e.entry.actor}</td><td>{e.entry.job}</td></tr>
              ))}
            </tbody>
          </table>
        </div>
      </section>
      <section>
        <h2>{t("metering")}</h2>
        <table>
          <thead><tr><th>peer</th><th>grant</th><th>component</th><th>calls</th><th>rows</th><th>bytes</th><th>CPU s</th></tr></thead>
          <tbody>
            {(meter?.lines ?? []).map((m, i) => (
              <tr key={i}><td>{m.peer}</td><td>{m.grant_id}</td><td>{m.component_type}</td><td>{m.calls}</td><td>{m.rows}</td><td>{m.bytes}</td><td>{m.cpu_seconds}</td></tr>
            ))}
          </tbody>
        </table>
      </section>
    </>
  );
}
