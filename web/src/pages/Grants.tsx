import { useState } from "react";

import { type PageProps, useLoad } from "../App";

interface Grant { id: string; dataset: string; peer: string; columns: string[]; components: string[]; receivers: string[]; calls_used: number; max_calls: number | null; revoked_at: string | null }
interface Job { id: string; name: string; status: string; parties: string[]; initiator?: string }

const list = (s: string) => s.split(",").map((x) => x.trim()).filter(Boolean);

export function GrantsPage({ api, t, report }: PageProps) {
  const [grants, reload] = useLoad(() => api.get<Grant[]>("/v1/grants"), report);
  const [jobs, reloadJobs] = useLoad(() => api.get<Job[]>("/v1/jobs?limit=200"), report);
  const [form, setForm] = useState({ dataset: "", peer: "", columns: "*", components: "psi", receivers: "" });
  const [reason, setReason] = useState("");
  const run = async (f: () => Promise<unknown>) => {
    try {
      await f();
      reload();
      reloadJobs();
    } catch (e) {
      report(e);
    }
  };
  const pending = (jobs ?? []).filter((j) => j.status === "pending_approval");
  return (
    <>
      <section>
        <h2>{t("pending")}</h2>
        {pending.length === 0 && <p>{t("empty")}</p>}
        {pending.map((j) => (
          <div className="row" key={j.id}>
            <span>{j.id} {j.name} ({j.parties.join(", ")})</span>
            <button className="act" onClick={() => void run(() => api.post(`/v1/jobs/${j.id}/approve`))}>{t("approve")}</button>
            <label>{t("reason")}<input value={reason} onChange={(e) => setReason(e.target.value)} /></label>
            <button className="act" onClick={() => void run(() => api.post(`/v1/jobs/${j.id}/decline`, { reason }))}>{t("decline")}</button>
          </div>
        ))}
      </section>
      <section>
        <h2>{t("addGrant")}</h2>
        <form className="row" onSubmit={(e) => (e.preventDefault(), void run(() => api.post("/v1/grants", {
          dataset: form.dataset, peer: form.peer, columns: list(form.columns), components: list(form.components),
          receivers: list(form.receivers) })))}>
          <label>{t("data")}<input name="g-dataset" value={form.dataset} onChange={(e) => setForm({ ...form, dataset: e.target.value })} /></label>
          <label>{t("grantTo")}<input name="g-peer" value={form.peer} onChange={(e) => setForm({ ...form, peer: e.target.value })} /></label>
          <label>{t("columns")}<input name="g-columns" value={form.columns} onChange={(e) => setForm({ ...form, columns: e.target.value })} /></label>
          <label>{t("components")}<input name="g-components" value={form.components} onChange={(e) => setForm({ ...form, components: e.target.value })} /></label>
          <label>{t("receivers")}<input name="g-receivers" value={form.receivers} onChange={(e) => setForm({ ...form, receivers: e.target.value })} /></label>
          <button className="act" type="submit">{t("addGrant")}</button>
        </form>
      </section>
      <section>
        <h2>{t("grants")}</h2>
        <table>
          <thead><tr><th>id</th><th>{t("data")}</th><th>{t("grantTo")}</th><th>{t("columns")}</th><th>{t("components")}</th><th>{t("receivers")}</th><th>calls</th><th /></tr></thead>
          <tbody>
            {(grants ?? []).map((g) => (
              <tr key={g.id} data-testid={`grant-${g.dataset}-${g.peer}`}>
                <td>{g.id}</td><td>{g.dataset}</td><td>{g.peer}</td><td>{g.columns.join(", ")}</td>
                <td>{g.components.join(", ")}</td><td>{g.receivers.join(", ")}</td>
                <td>{g.calls_used}{g.max_calls != null ? ` / ${g.max_calls}` : ""}</td>
                <td>{g.revoked_at ? "revoked" : <button className="act" onClick={() => void run(() => api.post(`/v1/grants/${g.id}/revoke`))}>{t("revoke")}</button>}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </section>
    </>
  );
}
