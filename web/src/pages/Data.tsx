import { useState } from "react";

import { type PageProps, useLoad } from "../App";

interface Dataset { name: string; path: string; id_column: string | null; num_rows: number; columns: Record<string, string>; published?: boolean }

export function DataPage({ api, t, report }: PageProps) {
  const [sets, reload] = useLoad(() => api.get<Dataset[]>("/v1/datasets"), report);
  const [peers] = useLoad(() => api.get<Array<{ name: string }>>("/v1/peers"), report);
  const [form, setForm] = useState({ name: "", path: "", id_column: "", sensitivity: "internal" });
  const [catalogue, setCatalogue] = useState<{ peer: string; rows: unknown[] }>();
  const add = async () => {
    try {
      await api.post("/v1/datasets", { name: form.name, path: form.path, id_column: form.id_column || null,
        sensitivity: form.sensitivity });
      setForm({ name: "", path: "", id_column: "", sensitivity: "internal" });
      reload();
    } catch (e) {
      report(e);
    }
  };
  const publish = async (name: string) => {
    try {
      await api.post(`/v1/datasets/${encodeURIComponent(name)}/publish`, {});
      reload();
    } catch (e) {
      report(e);
    }
  };
  const browse = async (peer: string) => {
    try {
      setCatalogue({ peer, rows: await api.get<unknown[]>(`/v1/catalogue/${encodeURIComponent(peer)}`) });
    } catch (e) {
      report(e);
    }
  };
  return (
    <>
      <section>
        <h2>{t("register")}</h2>
        <form className="row" onSubmit={(e) => (e.preventDefault(), void add())}>
          <label>{t("name")}<input name="ds-name" value={form.name} onChange={(e) => setForm({ ...form, name: e.target.value })} /></label>
          <label>{t("path")}<input name="ds-path" size={40} value={form.path} onChange={(e) => setForm({ ...form, path: e.target.value })} /></label>
          <label>{t("idColumn")}<input name="ds-id" value={form.id_column} onChange={(e) => setForm({ ...form, id_column: e.target.value })} /></label>
          <label>sensitivity
            <select name="ds-sensitivity" value={form.sensitivity} onChange={(e) => setForm({ ...form, sensitivity: e.target.value })}>
              {["public", "internal", "confidential", "secret"].map((x) => <option key={x}>{x}</option>)}
            </select>
          </label>
          <button className="act" type="submit">{t("register")}</button>
        </form>
      </section>
      <section>
        <h2>{t("data")}</h2>
        <table>
          <thead><tr><th>{t("name")}</th><th>{t("idColumn")}</th><th>{t("rows")}</th><th>{t("columns")}</th><th /></tr></thead>
          <tbody>
            {(sets ?? []).map((d) => (
              <tr key={d.name} data-testid={`dataset-${d.name}`}>
                <td>{d.name}</td><td>{d.id_column}</td><td>{d.num_rows}</td>
                <td>{Object.entries(d.columns).map(([c, ty]) => `${c}: ${ty}`).join(", ")}</td>
                <td><button className="act" onClick={() => void publish(d.name)}>{t("publish")}</button></td>
              </tr>
            ))}
          </tbody>
        </table>
      </section>
      <section>
        <h2>{t("peerDatasets")}</h2>
        <div className="row">{(peers ?? []).map((p) => <button key={p.name} className="act" onClick={() => void browse(p.name)}>{p.name}</button>)}</div>
        {catalogue && <pre>{catalogue.peer}: {JSON.stringify(catalogue.rows, null, 2)}</pre>}
      </section>
    </>
  );
}
