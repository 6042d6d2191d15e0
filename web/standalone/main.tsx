/**
 * The standalone page `pydeploy dashboard` serves: the spec's Monitoring page around the same
 * ProductionMonitoring component, for admins who have no React app yet.
 *
 * The page and the Edge Functions share one origin (pydeploy proxies /functions/v1/), so the
 * supabase-js client points at location.origin. The key (an admin access token minted by
 * `pydeploy dashboard`) comes in the URL fragment, #key=…, which browsers never send to a
 * server; the page moves it to sessionStorage and removes it from the address bar.
 */

import { createClient } from "@supabase/supabase-js";
import { type FormEvent, StrictMode, useMemo, useState } from "react";
import { createRoot } from "react-dom/client";
import { ProductionMonitoring } from "../src/ProductionMonitoring";

const STORAGE_KEY = "monitoring-dashboard-key";

function takeKey(): string | null {
  const hash = new URLSearchParams(location.hash.replace(/^#/, ""));
  const fromHash = hash.get("key");
  if (fromHash) {
    sessionStorage.setItem(STORAGE_KEY, fromHash);
    hash.delete("key");
    const rest = hash.toString();
    history.replaceState(null, "", location.pathname + location.search + (rest ? `#${rest}` : ""));
    return fromHash;
  }
  return sessionStorage.getItem(STORAGE_KEY);
}

function refreshFromQuery(): number | undefined {
  const raw = new URLSearchParams(location.search).get("refresh");
  const n = raw ? Number(raw) : NaN;
  return Number.isFinite(n) && n >= 1 ? n * 1000 : undefined;
}

function KeyForm({ onKey }: { onKey: (key: string) => void }) {
  const [value, setValue] = useState("");
  const submit = (e: FormEvent) => {
    e.preventDefault();
    if (value.trim()) onKey(value.trim());
  };
  return (
    <form onSubmit={submit} className="max-w-xl space-y-2" data-testid="key-form">
      <p className="text-slate-700">
        This page needs the key that <code>pydeploy dashboard</code>{" "}
        printed (the URL it prints carries it after <code>#key=</code>).
      </p>
      <input
        name="key"
        type="password"
        value={value}
        onChange={(e) => setValue(e.target.value)}
        className="w-full rounded border border-slate-300 px-2 py-1"
        placeholder="key"
        autoComplete="off"
      />
      <button type="submit" className="rounded bg-slate-800 px-3 py-1 text-white">Open</button>
    </form>
  );
}

function App() {
  const [key, setKey] = useState<string | null>(() => takeKey());
  const client = useMemo(
    () =>
      key
        ? createClient(location.origin, "standalone-dashboard", {
          accessToken: () => Promise.resolve(key),
        })
        : null,
    [key],
  );
  return (
    <div className="container mx-auto p-6">
      <h1 className="text-3xl font-bold mb-6">Production Monitoring</h1>
      {client
        ? <ProductionMonitoring client={client} refreshIntervalMs={refreshFromQuery()} />
        : (
          <KeyForm
            onKey={(k) => {
              sessionStorage.setItem(STORAGE_KEY, k);
              setKey(k);
            }}
          />
        )}
    </div>
  );
}

createRoot(document.getElementById("root")!).render(
  <StrictMode>
    <App />
  </StrictMode>,
);
