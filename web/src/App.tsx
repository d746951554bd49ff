import { useCallback, useEffect, useMemo, useState } from "react";

import { Api, ApiError } from "./api";
import { type Key, type Lang, translate } from "./i18n";
import { Builder } from "./pages/Builder";
import { DataPage } from "./pages/Data";
import { GrantsPage } from "./pages/Grants";
import { JobsPage } from "./pages/Jobs";
import { LedgerPage } from "./pages/Ledger";
import { Overview } from "./pages/Overview";

export type T = (key: Key) => string;
export interface PageProps {
  api: Api;
  t: T;
  report: (e: unknown) => void;
}

const PAGES = ["overview", "data", "grants", "builder", "jobs", "ledger"] as const;
type Page = (typeof PAGES)[number];

export function message(e: unknown): string {
  if (e instanceof ApiError) return `${e.code}: ${e.message}`;
  return e instanceof Error ? e.message : String(e);
}

export function App() {
  const [lang, setLang] = useState<Lang>(() => (localStorage.getItem("rb-lang") as Lang) || "zh");
  const [token, setToken] = useState(() => sessionStorage.getItem("rb-token") ?? "");
  const [page, setPage] = useState<Page>("overview");
  const [error, setError] = useState("");
  const t: T = useCallback((k) => translate(lang, k), [lang]);
  const api = useMemo(() => new Api(token), [token]);
  const report = useCallback((e: unknown) => setError(message(e)), []);

  useEffect(() => {
    document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
    localStorage.setItem("rb-lang", lang);
  }, [lang]);

  if (!token) return <Login t={t} onToken={(v) => (sessionStorage.setItem("rb-token", v), setToken(v))} />;
  const props: PageProps = { api, t, report };
  return (
    <>
      <header>
        <h1>{t("title")}</h1>
        <nav aria-label="pages">
          {PAGES.map((p) => (
            <button key={p} aria-current={p === page ? "page" : undefined} onClick={() => (setError(""), setPage(p))}>
              {t(p)}
            </button>
          ))}
        </nav>
        <span style={{ flex: 1 }} />
        <button className="act" onClick={() => setLang(lang === "zh" ? "en" : "zh")}>{t("language")}</button>
        <button className="act" onClick={() => (sessionStorage.removeItem("rb-token"), setToken(""))}>{t("logout")}</button>
      </header>
      <main>
        {error && (
          <div className="error" role="alert">
            {t("error")}: {error}
          </div>
        )}
        {page === "overview" && <Overview {...props} />}
        {page === "data" && <DataPage {...props} />}
        {page === "grants" && <GrantsPage {...props} />}
        {page === "builder" && <Builder {...props} onSubmitted={() => setPage("jobs")} />}
        {page === "jobs" && <JobsPage {...props} />}
        {page === "ledger" && <LedgerPage {...props} />}
      </main>
    </>
  );
}

function Login({ t, onToken }: { t: T; onToken: (v: string) => void }) {
  const [value, setValue] = useState("");
  const [error, setError] = useState("");
  const submit = async () => {
    try {
      await new Api(value.trim()).get("/v1/me");
      onToken(value.trim());
    } catch (e) {
      setError(message(e));
    }
  };
  return (
    <section className="login">
      <h2>{t("title")}</h2>
      {error && <div className="error" role="alert">{error}</div>}
      <form onSubmit={(e) => (e.preventDefault(), void submit())} className="row">
        <label>
          {t("token")}
          <input name="token" type="password" value={value} onChange={(e) => setValue(e.target.value)} autoFocus />
        </label>
        <button className="act" type="submit">{t("login")}</button>
      </form>
    </section>
  );
}

/** Load with `fn` when a page shows (and on refresh); errors go to the banner. */
export function useLoad<X>(fn: () => Promise<X>, report: (e: unknown) => void): [X | undefined, () => void] {
  const [data, setData] = useState<X>();
  const [n, setN] = useState(0);
  useEffect(() => {
    let live = true;
    fn().then((d) => live && setData(d), report);
    return () => {
      live = false;
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [n]);
  return [data, () => setN((x) => x + 1)];
}
