// deploy/web/realtime-nextjs.tsx: how a Next.js app (App Router, a client
// component) follows an org's scores live through Supabase Realtime with
// supabase-js v2. A reference to copy, not run by dealscore's tests.
//
// - The user's session (supabase.auth) carries app_metadata.org_id; RLS on
//   `predictions` lets Realtime send each subscriber only the rows of its
//   org (and, for an account-scoped user, of its accounts): the filter below
//   only narrows what RLS already allows.
// - `predictions` is in the `supabase_realtime` publication with a replica
//   identity that carries org_id, so INSERT and UPDATE events come with the
//   whole new row (proba_close, previous_proba, top_features, change,
//   meddicc) and DELETE events with opportunity_id and org_id.
// - `change` has one shape everywhere: {previous_proba, delta, drivers:
//   [{feature, label, previous, current, change}]}, as /api/predict answers.
// - To rescore one deal on demand, POST /api/predict with the same session
//   JWT (the API must list the app's origin in DEALSCORE_CORS_ORIGINS).
//
//   npm install @supabase/supabase-js
//   NEXT_PUBLIC_SUPABASE_URL=https://<project>.supabase.co
//   NEXT_PUBLIC_SUPABASE_ANON_KEY=<anon key>
//   NEXT_PUBLIC_DEALSCORE_API=https://<scoring host>
"use client";

import { useEffect, useState } from "react";
import { createClient, type RealtimePostgresChangesPayload } from "@supabase/supabase-js";

const supabase = createClient(process.env.NEXT_PUBLIC_SUPABASE_URL!, process.env.NEXT_PUBLIC_SUPABASE_ANON_KEY!);

type DriverChange = { feature: string; label: string; previous: number | null; current: number | null; change: number };
type Prediction = {
  org_id: string;
  opportunity_id: string;
  proba_close: number;
  previous_proba: number | null;
  model_version: string;
  is_prior: boolean;
  change: { previous_proba: number | null; delta: number | null; drivers: DriverChange[] };
  updated_at: string;
};

export function LiveScores({ orgId }: { orgId: string }) {
  const [scores, setScores] = useState<Record<string, Prediction>>({});

  useEffect(() => {
    // The current rows first (PostgREST, same RLS), then every change.
    supabase
      .from("predictions")
      .select("org_id, opportunity_id, proba_close, previous_proba, model_version, is_prior, change, updated_at")
      .then(({ data }) => setScores(Object.fromEntries((data ?? []).map((p) => [p.opportunity_id, p as Prediction]))));

    const channel = supabase
      .channel(`predictions:${orgId}`)
      .on(
        "postgres_changes",
        { event: "*", schema: "public", table: "predictions", filter: `org_id=eq.${orgId}` },
        (payload: RealtimePostgresChangesPayload<Prediction>) => {
          setScores((current) => {
            const next = { ...current };
            if (payload.eventType === "DELETE") delete next[(payload.old as Prediction).opportunity_id];
            else next[payload.new.opportunity_id] = payload.new;
            return next;
          });
        },
      )
      .subscribe();
    // Realtime checks RLS with the session's JWT: give it the new one when it is refreshed.
    const { data: auth } = supabase.auth.onAuthStateChange((_event, session) => {
      if (session) supabase.realtime.setAuth(session.access_token);
    });
    return () => {
      supabase.removeChannel(channel);
      auth.subscription.unsubscribe();
    };
  }, [orgId]);

  return (
    <ul>
      {Object.values(scores).map((p) => (
        <li key={p.opportunity_id}>
          {p.opportunity_id}: {(100 * p.proba_close).toFixed(1)}%
          {p.change.delta !== null && ` (${p.change.delta >= 0 ? "+" : ""}${(100 * p.change.delta).toFixed(1)} points: ` +
            p.change.drivers.map((d) => d.label).join(", ") + ")"}
        </li>
      ))}
    </ul>
  );
}

// Rescoring one deal now, from the browser.
export async function rescore(deal: { opportunity_id: string } | { external_id: string }) {
  const { data } = await supabase.auth.getSession();
  const res = await fetch(`${process.env.NEXT_PUBLIC_DEALSCORE_API}/api/predict`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${data.session?.access_token}` },
    body: JSON.stringify(deal),
  });
  if (!res.ok) throw new Error((await res.json()).message);
  return res.json();
}
