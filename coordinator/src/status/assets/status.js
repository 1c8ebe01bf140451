// The mo-br status page: fetches /api/status every second and draws it.
// Everything is built with DOM calls and textContent (never markup from
// data), so nothing in a backup id or an address can run as code.
"use strict";

const REFRESH_MS = 1000;

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("data-")) e.setAttribute(k, String(v));
    else e[k] = v;
  }
  for (const c of children) {
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function bytes(n) {
  const units = ["B", "KB", "MB", "GB", "TB", "PB"];
  let i = 0;
  let v = n;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return (i === 0 ? v.toFixed(0) : v.toFixed(1)) + " " + units[i];
}

function rate(n) {
  return n === null || n === undefined ? "–" : bytes(n) + "/s";
}

function shown(id) {
  return id || "–";
}

function replace(parent, children) {
  parent.replaceChildren(...children);
}

function drawReplica(r) {
  const health = r.healthy ? "healthy" : "no quorum";
  const leader =
    r.leader_id === 0
      ? "none known"
      : String(r.leader_id) + (r.leader_address ? " (" + r.leader_address + ")" : "");
  const rows = [
    ["Mode", r.mode, "mode"],
    ["Replica", String(r.id), "id"],
    ["Role", r.role, "role"],
    ["Term", String(r.term), "term"],
    ["Leader", leader, "leader"],
    ["Health", health, "health"],
    ["Commit / applied", r.commit_index + " / " + r.applied_index, "indexes"],
  ];
  const dl = document.getElementById("replica");
  replace(
    dl,
    rows.flatMap(([k, v, key]) => [
      el("dt", {}, k),
      el("dd", { "data-field": key, class: key === "health" ? (r.healthy ? "ok" : "bad") : "" }, v),
    ]),
  );
}

function drawJobs(jobs) {
  const body = document.querySelector("#jobs tbody");
  replace(
    body,
    jobs.map((j) => {
      const pct = j.bytes_total > 0 ? (100 * j.bytes_done) / j.bytes_total : 0;
      const bar = el("progress", { max: 100, value: pct });
      return el(
        "tr",
        { "data-job": j.backup_id || j.job_id, "data-bytes-done": j.bytes_done, "data-bytes-total": j.bytes_total },
        el("td", {}, el("code", {}, shown(j.backup_id || j.job_id))),
        el("td", {}, j.what || j.kind),
        el("td", {}, j.target || "–"),
        el("td", {}, bar, " " + pct.toFixed(0) + "%"),
        el("td", {}, bytes(j.bytes_done) + " / " + bytes(j.bytes_total)),
        el("td", {}, j.files_done + " / " + j.files_total),
        el("td", {}, j.live ? rate(j.bytes_per_sec) : "by shard"),
      );
    }),
  );
  document.getElementById("no-jobs").hidden = jobs.length > 0;
}

function drawAgents(agents) {
  const body = document.querySelector("#agents tbody");
  replace(
    body,
    agents.map((a) =>
      el(
        "tr",
        { "data-agent": a.id, "data-live": String(a.live) },
        el("td", {}, a.id),
        el("td", {}, a.address || "–"),
        el("td", {}, a.node || "–"),
        a.live === null
          ? el("td", { class: "muted", title: "leases are kept by the leader" }, "ask the leader")
          : el("td", { class: a.live ? "ok" : "bad" }, a.live ? "live" : "down"),
        el("td", {}, bytes(a.bytes_copied)),
        el("td", {}, rate(a.bytes_per_sec)),
      ),
    ),
  );
  document.getElementById("no-agents").hidden = agents.length > 0;
}

function backupNode(b) {
  const when = b.at_time ? b.at_time.replace("T", " ").replace(/\.\d+/, "") : "";
  const label = el(
    "span",
    { class: "backup " + b.state, title: b.reason || b.id },
    el("span", { class: "type" }, b.backup_type),
    " ",
    el("code", {}, b.id),
    " " + when + " · " + b.state + " · " + bytes(b.size) + " · " + b.files + " files · " + b.location,
  );
  const li = el("li", { "data-backup": b.id, "data-type": b.backup_type, "data-base": b.base_id || "" }, label);
  if (b.base_id && !b.base_shown) {
    li.append(el("span", { class: "muted" },  " (base " + b.base_id + " not shown)"));
  }
  if (b.children.length > 0) {
    li.append(el("ul", {}, ...b.children.map(backupNode)));
  }
  return li;
}

function drawCatalog(c) {
  document.getElementById("catalog-summary").textContent =
    c.backups === 0
      ? "No backup yet."
      : "The newest " + c.shown + " of " + c.backups + " backups; incrementals under their base.";
  replace(document.getElementById("chains"), c.chains.map(backupNode));
}

function draw(s) {
  drawReplica(s.replica);
  drawJobs(s.jobs);
  drawAgents(s.agents);
  drawCatalog(s.catalog);
  const updated = document.getElementById("updated");
  updated.textContent = "updated " + s.generated_at;
  updated.className = "muted";
}

async function refresh() {
  const updated = document.getElementById("updated");
  try {
    const response = await fetch("/api/status", { cache: "no-store", credentials: "same-origin" });
    if (response.status === 401 || response.status === 403) {
      window.location.assign("/login");
      return;
    }
    if (!response.ok) {
      updated.textContent = "the coordinator answered " + response.status + "; retrying";
      updated.className = "bad";
    } else {
      draw(await response.json());
    }
  } catch (e) {
    updated.textContent = "cannot reach the coordinator; retrying";
    updated.className = "bad";
  }
  window.setTimeout(refresh, REFRESH_MS);
}

document.addEventListener("DOMContentLoaded", refresh);
