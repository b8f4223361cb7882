// The human status page served at GET /: one self-contained HTML document (no
// external assets) that polls /v1/status and /v1/models every 2 s.
#pragma once

namespace rlaif::daemon {

inline constexpr const char* kStatusPageHtml = R"HTML(<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>rlaifd</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{background:#1d2330;color:#fff;padding:10px 20px;display:flex;gap:16px;align-items:center}
header h1{font-size:18px;margin:0}
.pill{padding:2px 10px;border-radius:10px;font-weight:600}
.running{background:#1f9d55}.paused{background:#d69e2e}.degraded{background:#e53e3e}
main{padding:16px 20px;display:grid;grid-template-columns:repeat(auto-fit,minmax(320px,1fr));gap:16px}
section{background:#fff;border-radius:8px;padding:12px 16px;box-shadow:0 1px 2px #0002;min-width:0;overflow-x:auto}
.wide{grid-column:span 2}@media(max-width:720px){.wide{grid-column:auto}}
h2{font-size:15px;margin:0 0 8px}
table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:3px 6px;border-bottom:1px solid #eee}td{overflow-wrap:anywhere}
td.err{color:#c53030;font-size:12px}
.flow{display:flex;gap:6px;align-items:center;flex-wrap:wrap}.stage{background:#edf2f7;border-radius:6px;padding:6px 10px;text-align:center}
.stage b{display:block;font-size:18px}.muted{color:#718096}
</style></head><body>
<header><h1>rlaifd</h1><span id="state" class="pill">…</span><span id="reasons" class="muted"></span>
<span style="margin-left:auto" id="updated" class="muted"></span></header>
<main>
<section style="grid-column:1/-1"><h2>Pipeline</h2><div class="flow" id="flow"></div></section>
<section><h2>Live model</h2><table id="model"></table></section>
<section><h2>Training</h2><table id="training"></table></section>
<section><h2>Sources</h2><table id="sources"></table></section>
<section class="wide"><h2>Upstream</h2><table id="upstream"></table></section>
<section><h2>Judge health (rolling window)</h2><table id="judge"></table></section>
<section><h2>Disk</h2><table id="disk"></table></section>
<section style="grid-column:1/-1"><h2>Model history (held-out accuracy)</h2><svg id="chart" width="100%" height="160"></svg>
<table id="models"></table></section>
</main>
<script>
"use strict";
const $=id=>document.getElementById(id);
const esc=s=>String(s??"").replace(/[&<>"]/g,c=>({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;"}[c]));
const rows=(el,kv)=>{$(el).innerHTML=kv.map(([k,v])=>`<tr><th>${esc(k)}</th><td>${esc(v)}</td></tr>`).join("")};
let last=null,lastT=0;
function rate(now,prev,key,dt){if(!prev||dt<=0)return "";return ` (${((now.counts[key]-prev.counts[key])/dt).toFixed(1)}/s)`}
async function tick(){
 try{
  const s=await (await fetch("/v1/status")).json();
  const m=await (await fetch("/v1/models")).json();
  const t=Date.now()/1000,dt=last?t-lastT:0;
  $("state").textContent=s.state;$("state").className="pill "+s.state;
  $("reasons").textContent=(s.reasons||[]).concat((s.warnings||[]).map(w=>"warning: "+w)).join("; ");
  $("updated").textContent="updated "+new Date().toLocaleTimeString();
  const st=(n,v,sub)=>`<div class="stage"><span class="muted">${n}</span><b id="n-${n}">${v}</b>${sub||""}</div>`;
  $("flow").innerHTML=[st("prompts",s.counts.prompts,rate(s,last,"prompts",dt)),"→",
   st("generate queue",s.queues.generate.depth,`in flight ${s.queues.generate.in_flight}`),"→",
   st("pairs",s.counts.pairs,rate(s,last,"pairs",dt)),"→",
   st("judge queue",s.queues.judge.depth,`in flight ${s.queues.judge.in_flight}`),"→",
   st("labels",s.counts.labels,rate(s,last,"labels",dt)),"→",
   st("since last train",s.counts.labels_since_train,`of ${s.training.min_new_labels}`),
   st("dead letters",s.counts.dead)].join("");
  rows("model",[["live version",s.model.live_version||"none yet"],["held-out accuracy",s.model.accuracy!=null?s.model.accuracy.toFixed(3):"-"],
   ["holdout pairs",s.model.holdout_pairs??"-"],["device",s.model.device??"-"],["age",s.model.age_s!=null?Math.round(s.model.age_s)+" s":"-"]]);
  const l=s.training.last||{};
  rows("training",[["running",s.training.running?`yes (${Math.round(100*s.training.progress)}%)`:"no"],["runs",s.training.runs],
   ["last version",l.version||"-"],["last outcome",l.outcome||"-"],["why",l.reason||"-"]]);
  $("sources").innerHTML="<tr><th>path</th><th>offset</th><th>lag (bytes)</th></tr>"+(s.sources||[]).map(x=>`<tr><td>${esc(x.path)}</td><td>${x.offset}</td><td>${x.lag_bytes}</td></tr>`).join("");
  $("upstream").innerHTML="<tr><th></th><th>calls ok</th><th>calls failed</th><th>attempts (failed)</th><th>circuit</th><th>spent this hour</th></tr>"+["generator","judge"].map(k=>{const u=s.upstream[k];const b=u.budget||{};const c=u.calls||{};const err=u.held||u.last_error;return `<tr><th>${k}</th><td>${c.ok??"-"}</td><td>${(c.error??0)+(c.rejected??0)}${c.rejected?` (${c.rejected} refused)`:""}</td><td>${u.requests} (${u.request_errors??"-"})</td><td>${esc(u.breaker)}</td><td>$${(b.spent_this_hour_usd||0).toFixed(2)}${b.hourly_usd?" of $"+b.hourly_usd.toFixed(2):""}${b.exhausted?" (exhausted)":""}</td></tr>`+(err?`<tr><td></td><td class="err" colspan="5">${esc(err)}</td></tr>`:"")}).join("");
  const h=(s.judge&&s.judge.health)||{},ha=(s.judge&&s.judge.human_agreement)||{},pct=v=>v==null?"-":(100*v).toFixed(1)+"%";
  rows("judge",[["labels in window",h.window_labels??"-"],["position consistency",pct(h.position_consistency)],["first position wins",pct(h.first_position_rate)],
   ["longer response wins",pct(h.longer_wins_rate)],["ties",pct(h.tie_rate)],["parse failures",pct(h.parse_failure_rate)],
   ["latency p50 / p95",h.latency_p50_ms!=null?`${h.latency_p50_ms.toFixed(0)} / ${h.latency_p95_ms.toFixed(0)} ms`:"-"],
   ["judge-human agreement",ha.agreement!=null?`${pct(ha.agreement)} on ${ha.pairs_with_both} pairs`:"no human labels yet"]]);
  const d=s.disk||{},sr=d.store_retention||{},cr=d.checkpoint_retention||{},lp=sr.last_pass;
  const gb=v=>v==null?"-":(v/1e9).toFixed(2)+" GB";
  rows("disk",[["free",d.free_bytes!=null?`${gb(d.free_bytes)} of ${gb(d.capacity_bytes)}`:"-"],["store",gb(d.store_bytes)],["models",gb(d.models_bytes)],["backups (unshared)",gb(d.backups_bytes)],
   ["store retention",sr.max_age_days!=null?`${sr.max_age_days} days`:"off (keeps every record)"],
   ["last pass",lp?(lp.error?"failed: "+lp.error:`${lp.at}: deleted ${lp.deleted.prompts} prompts, ${lp.deleted.pairs} pairs, ${lp.deleted.labels} labels, ${lp.deleted.dead} dead letters`):"-"],
   ["checkpoints kept",cr.keep_models!=null?`${cr.keep_models} (plus live, candidates, held, rollback target)`:"all"],["checkpoints deleted since start",cr.deleted_since_start??"-"]]);
  const ms=(m.models||[]).slice().reverse();
  const svg=$("chart"),W=svg.clientWidth||600,H=160,pad=30;
  let g=`<line x1="${pad}" y1="${H-pad}" x2="${W}" y2="${H-pad}" stroke="#999"/><text x="2" y="${pad}" font-size="10">1.0</text><text x="2" y="${H-pad}" font-size="10">0.0</text>`;
  ms.forEach((x,i)=>{const a=x.metrics&&x.metrics.accuracy!=null?x.metrics.accuracy:0;const bw=Math.min(48,Math.max(6,(W-pad)/Math.max(ms.length,1)-6));
   const h=(H-2*pad)*a,xx=pad+i*(bw+6);g+=`<rect x="${xx}" y="${H-pad-h}" width="${bw}" height="${h}" fill="${x.live?"#1f9d55":x.state=="rejected"?"#e53e3e":"#4a5568"}"><title>${esc(x.version)}: ${a.toFixed(3)}</title></rect>`;});
  svg.innerHTML=g;
  $("models").innerHTML="<tr><th>version</th><th>state</th><th>accuracy</th><th>holdout</th><th>why</th></tr>"+(m.models||[]).map(x=>`<tr><td>${esc(x.version)}</td><td>${esc(x.state)}</td><td>${x.metrics.accuracy!=null?x.metrics.accuracy.toFixed(3):"-"}</td><td>${x.holdout_pairs}</td><td>${esc(x.reason)}</td></tr>`).join("");
  last=s;lastT=t;
 }catch(e){$("state").textContent="unreachable";$("state").className="pill degraded";}
}
tick();setInterval(tick,2000);
</script></body></html>
)HTML";

}  // namespace rlaif::daemon
