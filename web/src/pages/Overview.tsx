import { type PageProps, useLoad } from "../App";

interface NodeInfo { name: string; fingerprint: string; data_plane?: string; version?: string }
interface PeerRow { name: string; url: string; fingerprint: string }
interface JobRow { id: string; name: string; status: string; parties: string[]; created_at?: string }

interface Ping { peer: string; online: boolean; milliseconds: number; reason: string | null }

export function Overview({ api, t, report }: PageProps) {
  const [node] = useLoad(() => api.get<NodeInfo>("/v1/node"), report);
  const [peers] = useLoad(() => api.get<PeerRow[]>("/v1/peers"), report);
  const [pings] = useLoad(async () => {
    const list = await api.get<PeerRow[]>("/v1/peers");
    const got = await Promise.all(list.map((p) => api.get<Ping>(`/v1/peers/${encodeURIComponent(p.name)}/ping`)));
    return Object.fromEntries(got.map((g) => [g.peer, g]));
  }, report);
  const [jobs, reload] = useLoad(() => api.get<JobRow[]>("/v1/jobs?limit=10"), report);
  return (
    <>
      <section aria-label={t("node")}>
        <h2>{t("node")}</h2>
        {node && (
          <p data-testid="node-name">
            <b>{node.name}</b> · {node.data_plane ?? ""} · <code>{node.fingerprint.slice(0, 16)}…</code>
          </p>
        )}
      </section>
      <section>
        <h2>{t("peers")}</h2>
        <table>
          <thead><tr><th>{t("name")}</th><th>URL</th><th>fingerprint</th><th>{t("status")}</th></tr></thead>
          <tbody>
            {(peers ?? []).map((p) => {
              const g = pings?.[p.name];
              return (
                <tr key={p.name} data-testid={`peer-${p.name}`}>
                  <td>{p.name}</td><td>{p.url}</td><td><code>{p.fingerprint.slice(0, 16)}…</code></td>
                  <td className={g ? (g.online ? "ok" : "bad") : ""} title={g?.reason ?? ""}>
                    {g ? (g.online ? `● ${g.milliseconds} ms` : "○ offline") : "…"}
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
        {peers?.length === 0 && <p>{t("empty")}</p>}
      </section>
      <section>
        <h2>{t("recentJobs")} <button className="act" onClick={reload}>{t("refresh")}</button></h2>
        <JobTable jobs={jobs ?? []} t={t} />
      </section>
    </>
  );
}

export function JobTable({ jobs, t, onPick }: { jobs: JobRow[]; t: PageProps["t"]; onPick?: (id: string) => void }) {
  return (
    <table>
      <thead><tr><th>id</th><th>{t("name")}</th><th>{t("parties")}</th><th>{t("status")}</th></tr></thead>
      <tbody>
        {jobs.map((j) => (
          <tr key={j.id}>
            <td>{onPick ? <button className="act" onClick={() => onPick(j.id)}>{j.id}</button> : j.id}</td>
            <td>{j.name}</td>
            <td>{(j.parties ?? []).join(", ")}</td>
            <td className={`status-${j.status}`}>{j.status}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}
