// keygate's console: plain JavaScript against keygate's own API, nothing
// from anywhere else. The key lives in sessionStorage only.
"use strict";

const KEY = "keygate.key";
const $ = (id) => document.getElementById(id);
const views = ["sign-in", "keys", "new-key", "key-page", "organization"];

function say(text) {
  $("status").textContent = text;
}

function key() {
  return sessionStorage.getItem(KEY);
}

async function api(method, path, body, auth = key()) {
  const headers = {};
  if (auth) headers.authorization = auth;
  if (body !== undefined) headers["content-type"] = "application/json";
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    const error = new Error((data && data.error) || `HTTP ${response.status}`);
    error.status = response.status;
    throw error;
  }
  return data;
}

function show(view) {
  for (const id of views) $(id).hidden = id !== view;
  $("nav").hidden = view === "sign-in";
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function relative(iso) {
  if (!iso) return "never";
  const ms = new Date(iso).getTime() - Date.now();
  const minutes = Math.round(Math.abs(ms) / 60000);
  if (minutes < 1) return "just now";
  const hours = Math.round(minutes / 60);
  const days = Math.round(minutes / 1440);
  const plural = (n, unit) => `${n} ${unit}${n === 1 ? "" : "s"}`;
  const amount = days >= 1 ? plural(days, "day") : hours >= 1 ? plural(hours, "hour") : plural(minutes, "minute");
  return ms >= 0 ? `in ${amount}` : `${amount} ago`;
}

function expires(iso) {
  if (!iso) return "never";
  return new Date(iso).getTime() <= Date.now() ? "expired" : relative(iso);
}

// ---------------------------------------------------------------- routing

function route() {
  const hash = location.hash || "#/keys";
  if (!key() && !hash.startsWith("#/sign-in")) {
    show("sign-in");
    return;
  }
  if (hash.startsWith("#/keys/new")) return newKey();
  const page = hash.match(/^#\/keys\/(\d+)/);
  if (page) return keyPage(Number(page[1]));
  if (hash.startsWith("#/organization")) return organization();
  if (hash.startsWith("#/sign-in")) return show("sign-in");
  return keys();
}

function query() {
  const at = location.hash.indexOf("?");
  return new URLSearchParams(at < 0 ? "" : location.hash.slice(at + 1));
}

function setQuery(params) {
  const text = params.toString();
  history.replaceState(null, "", `#/keys${text ? "?" + text : ""}`);
}

// ---------------------------------------------------------------- sign in

$("sign-in-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const candidate = $("sign-in-key").value.trim();
  try {
    await api("GET", "/apikey", undefined, candidate);
    sessionStorage.setItem(KEY, candidate);
    cachedOrgs = null;
    $("sign-in-key").value = "";
    say("Signed in.");
    if (location.hash === "#/keys") route();
    else location.hash = "#/keys";
  } catch (error) {
    say(`Cannot sign in: ${error.message}`);
  }
});

$("redeem-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    // Signed in: an existing account accepts with its own key; a new one sends none.
    const current = sessionStorage.getItem(KEY);
    const redeemed = await api("POST", "/invites/redeem", { code: $("redeem-code").value.trim() }, current);
    $("redeem-code").value = "";
    cachedOrgs = null;
    if (redeemed.key) {
      sessionStorage.setItem(KEY, redeemed.key);
      say("Invitation redeemed: you are a member, signed in with your first key.");
      showSecret(redeemed.key, "Your first key. It is shown once: keygate keeps only its hash.");
    } else {
      say(`Invitation accepted: your account is now a member, as ${redeemed.role}.`);
    }
    location.hash = "#/organization";
  } catch (error) {
    say(`Cannot redeem: ${error.message}`);
  }
});

$("sign-out").addEventListener("click", () => {
  sessionStorage.removeItem(KEY);
  cachedOrgs = null;
  say("Signed out.");
  show("sign-in");
});

// ---------------------------------------------------------------- keys

let listed = [];
let cachedOrgs = null;

async function keys() {
  show("keys");
  const params = query();
  $("search").value = params.get("q") || "";
  $("filter-mode").value = params.get("mode") || "";
  $("sort").value = params.get("sort") || "id";
  try {
    const orgs = await organizations();
    listed = (await api("GET", "/apikey")).data;
    renderKeys(orgs);
  } catch (error) {
    say(`Cannot list keys: ${error.message}`);
  }
}

function renderKeys(orgs) {
  const search = $("search").value.trim().toLowerCase();
  const mode = $("filter-mode").value;
  const sort = $("sort").value;
  const names = new Map(orgs.map((o) => [o.id, o.name]));
  const rows = listed
    .filter((k) => !search || k.name.toLowerCase().includes(search) || k.key.toLowerCase().includes(search))
    .filter((k) => !mode || k.mode === mode)
    .sort((a, b) => {
      if (sort === "-id") return b.id - a.id;
      if (sort === "name") return a.name.localeCompare(b.name);
      if (sort === "last_used_at") return (b.last_used_at || "").localeCompare(a.last_used_at || "");
      return a.id - b.id;
    });
  const body = $("keys-table").tBodies[0];
  body.replaceChildren(
    ...rows.map((k) =>
      el(
        "tr",
        { "data-key-id": String(k.id) },
        el("td", {}, el("a", { href: `#/keys/${k.id}`, text: k.name })),
        el("td", {}, el("code", { text: k.key })),
        el("td", { text: k.enabled === false ? `${k.mode} (disabled)` : k.mode }),
        el("td", { text: k.org_id ? names.get(k.org_id) || k.org_id : "all yours" }),
        el("td", { text: k.limited_to_apps.length ? k.limited_to_apps.join(", ") : "all" }),
        el("td", { text: expires(k.expires_at) }),
        el("td", { text: k.last_used_at ? relative(k.last_used_at) : "never" }),
        el("td", { class: "usage", "data-usage-for": String(k.id) }),
        el(
          "td",
          {},
          el("button", { type: "button", text: "Rotate", "aria-label": `Rotate ${k.name}`, onclick: () => rotate(k) }),
          el("button", { type: "button", text: "Delete", "aria-label": `Delete ${k.name}`, onclick: () => remove(k) }),
        ),
      ),
    ),
  );
  if (rows.length === 0) body.append(el("tr", {}, el("td", { colspan: "9", text: "No keys match." })));
  rows.forEach(sparkline);
}

async function sparkline(k) {
  const cell = document.querySelector(`[data-usage-for="${k.id}"]`);
  try {
    const usage = await api("GET", `/apikey/${k.id}/usage?days=7`);
    const counts = usage.data.map((d) => d.requests);
    const most = Math.max(1, ...counts);
    const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("viewBox", "0 0 70 20");
    svg.setAttribute("width", "70");
    svg.setAttribute("height", "20");
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", `Requests over 7 days: ${counts.join(", ")}`);
    counts.forEach((count, i) => {
      const bar = document.createElementNS("http://www.w3.org/2000/svg", "rect");
      const height = Math.max(1, Math.round((count / most) * 20));
      bar.setAttribute("x", String(i * 10));
      bar.setAttribute("y", String(20 - height));
      bar.setAttribute("width", "8");
      bar.setAttribute("height", String(height));
      svg.append(bar);
    });
    cell.replaceChildren(svg);
  } catch {
    cell.textContent = "-";
  }
}

for (const id of ["search", "filter-mode", "sort"]) {
  $(id).addEventListener("input", async () => {
    const params = new URLSearchParams();
    if ($("search").value) params.set("q", $("search").value);
    if ($("filter-mode").value) params.set("mode", $("filter-mode").value);
    if ($("sort").value !== "id") params.set("sort", $("sort").value);
    setQuery(params);
    renderKeys(await organizations());
  });
}

async function organizations() {
  if (!cachedOrgs) cachedOrgs = (await api("GET", "/organization")).data;
  return cachedOrgs;
}

// ---------------------------------------------------------------- a key's page

async function keyPage(id) {
  show("key-page");
  try {
    const k = (await api("GET", `/apikey/${id}`)).apikey;
    $("key-title").textContent = `Key ${k.name}`;
    const limits = k.ratelimits.map((l) => `${l.name}: ${l.limit} per ${l.duration_ms / 1000} s`).join("; ") || "none";
    const credits = k.credits ? `${k.credits.remaining} left${k.credits.refill ? `, refilled to ${k.credits.refill.amount} ${k.credits.refill.interval}` : ""}` : "unlimited";
    const facts = [
      ["Preview", k.key], ["Mode", k.mode], ["Enabled", k.enabled ? "yes" : "no"],
      ["Organization", k.org_id || "all yours (unscoped)"], ["Apps", k.limited_to_apps.join(", ") || "all"],
      ["Expires", expires(k.expires_at)], ["Last used", k.last_used_at ? relative(k.last_used_at) : "never"],
      ["Rate limits", limits], ["Credits", credits], ["Created", relative(k.created_at)],
    ];
    $("key-details").replaceChildren(...facts.flatMap(([term, value]) => [el("dt", { text: term }), el("dd", { text: value })]));
    const usage = (await api("GET", `/apikey/${id}/usage?days=30`)).data;
    $("key-usage").replaceChildren(chart(usage));
    await keyAudit(k);
  } catch (error) {
    say(`Cannot show the key: ${error.message}`);
  }
}

function chart(days) {
  const most = Math.max(1, ...days.map((d) => d.requests));
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", `0 0 ${days.length * 12} 64`);
  svg.setAttribute("class", "chart");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `Requests per day, oldest first: ${days.map((d) => `${d.date} ${d.requests}`).join(", ")}`);
  days.forEach((d, i) => {
    const bar = document.createElementNS("http://www.w3.org/2000/svg", "rect");
    const height = Math.max(1, Math.round((d.requests / most) * 60));
    bar.setAttribute("x", String(i * 12));
    bar.setAttribute("y", String(64 - height));
    bar.setAttribute("width", "10");
    bar.setAttribute("height", String(height));
    const title = document.createElementNS("http://www.w3.org/2000/svg", "title");
    title.textContent = `${d.date}: ${d.requests} requests, ${d.denied} denied`;
    bar.append(title);
    svg.append(bar);
  });
  return svg;
}

async function keyAudit(k) {
  if (!k.org_id) {
    $("key-audit").replaceChildren(el("li", { text: "An unscoped key's entries are in each of its owner's organizations." }));
    return;
  }
  try {
    const found = [];
    let before = "";
    for (let page = 0; page < 5 && found.length < 20; page++) {
      const events = (await api("GET", `/organization/audit?org_id=${k.org_id}&limit=200${before}`)).data;
      found.push(...events.filter((e) => e.target_type === "apikey" && e.target_id === String(k.id)));
      if (events.length < 200) break;
      before = `&before=${events[events.length - 1].id}`;
    }
    $("key-audit").replaceChildren(
      ...found.map((e) => el("li", { text: `${new Date(e.at).toLocaleString()}: ${e.action}${e.ip ? ` from ${e.ip}` : ""}` })),
    );
    if (!found.length) $("key-audit").replaceChildren(el("li", { text: "No entries." }));
  } catch (error) {
    $("key-audit").replaceChildren(el("li", { text: `The audit log needs the admin right: ${error.message}` }));
  }
}

// ---------------------------------------------------------------- new key

async function newKey() {
  show("new-key");
  const orgs = await organizations().catch(() => []);
  $("new-org").replaceChildren(...orgs.map((o) => el("option", { value: o.id, text: `${o.name} (${o.role})` })));
  await orgChosen();
}

async function orgChosen() {
  const orgs = await organizations();
  const org = orgs.find((o) => o.id === $("new-org").value);
  if (!org) return;
  const max = org.max_apikey_expiration_days;
  const presets = [[7, "in 7 days"], [30, "in 30 days"], [90, "in 90 days"], [365, "in a year"]].filter(
    ([days]) => !max || days <= max,
  );
  if (max && !presets.some(([days]) => days === max)) presets.push([max, `in ${max} days (the longest allowed)`]);
  const options = presets.map(([days, text]) => el("option", { value: String(days), text }));
  if (!org.require_apikey_expiration) options.unshift(el("option", { value: "", text: "never" }));
  $("new-expiry").replaceChildren(...options);
  $("new-expiry-policy").textContent = org.require_apikey_expiration
    ? `This organization requires keys to expire${max ? `, within ${max} days` : ""}.`
    : max
      ? `Keys of this organization expire within ${max} days.`
      : "";
  const apps = await api("GET", `/app?org_id=${org.id}`).then((r) => r.data).catch(() => []);
  const legend = $("new-apps").querySelector("legend");
  $("new-apps").replaceChildren(
    legend,
    ...apps.map((a) =>
      el("label", {}, el("input", { type: "checkbox", name: "app", value: a.app_id }), ` ${a.name} (${a.app_id})`),
    ),
  );
}

$("new-org").addEventListener("change", orgChosen);

$("new-key-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const body = {
    org_id: $("new-org").value,
    mode: document.querySelector('input[name="mode"]:checked').value,
  };
  if ($("new-name").value.trim()) body.name = $("new-name").value.trim();
  const apps = [...document.querySelectorAll('input[name="app"]:checked')].map((i) => i.value);
  if (apps.length) body.limited_to_apps = apps;
  const days = $("new-expiry").value;
  if (days) body.expires_at = new Date(Date.now() + Number(days) * 86400000).toISOString();
  try {
    const created = await api("POST", "/apikey", body);
    say(`Key ${created.apikey.name} created.`);
    $("new-key-form").reset();
    location.hash = "#/keys";
    showSecret(created.apikey.key, "Your new key. It is shown once: keygate keeps only its hash.");
  } catch (error) {
    say(`Cannot create the key: ${error.message}`);
  }
});

// ---------------------------------------------------------------- show once

function showSecret(secret, what) {
  $("secret").textContent = secret;
  $("secret-what").textContent = what;
  $("secret-curl").textContent = `curl -H "authorization: ${secret}" ${location.origin}/organization`;
  $("secret-saved").checked = false;
  $("close-secret").disabled = true;
  $("secret-dialog").showModal();
}

$("copy-secret").addEventListener("click", async () => {
  try {
    await navigator.clipboard.writeText($("secret").textContent);
    say("Copied.");
  } catch {
    say("Copying is not allowed here: select the key and copy it.");
  }
});
$("secret-saved").addEventListener("change", () => {
  $("close-secret").disabled = !$("secret-saved").checked;
});
$("close-secret").addEventListener("click", () => {
  $("secret").textContent = "";
  $("secret-curl").textContent = "";
  $("secret-dialog").close();
  route();
});
$("secret-dialog").addEventListener("cancel", (event) => {
  if (!$("secret-saved").checked) {
    event.preventDefault();
    say("Tick “I have saved it” first: the key cannot be shown again.");
  }
});

// ---------------------------------------------------------------- rotate, delete

function rotate(k) {
  const dialog = $("rotate-dialog");
  dialog.returnValue = "";
  dialog.showModal();
  dialog.addEventListener(
    "close",
    async () => {
      if (dialog.returnValue !== "rotate") return;
      try {
        const grace = Number($("rotate-grace").value);
        const rotated = await api("POST", `/apikey/${k.id}/rotate`, { grace_period_seconds: grace });
        say(`Key ${k.name} rotated.`);
        showSecret(rotated.apikey.key, "The new secret. It is shown once: keygate keeps only its hash.");
      } catch (error) {
        say(`Cannot rotate: ${error.message}`);
      }
    },
    { once: true },
  );
}

function remove(k) {
  const dialog = $("delete-dialog");
  $("delete-name").textContent = k.name;
  $("delete-confirm").value = "";
  $("delete-submit").disabled = true;
  dialog.returnValue = "";
  dialog.showModal();
  dialog.addEventListener(
    "close",
    async () => {
      if (dialog.returnValue !== "delete" || $("delete-confirm").value !== k.name) return;
      try {
        await api("DELETE", `/apikey/${k.id}`);
        say(`Key ${k.name} deleted.`);
        route();
      } catch (error) {
        say(`Cannot delete: ${error.message}`);
      }
    },
    { once: true },
  );
}

$("delete-confirm").addEventListener("input", () => {
  $("delete-submit").disabled = $("delete-confirm").value !== $("delete-name").textContent;
});

// ---------------------------------------------------------------- organization

async function organization() {
  show("organization");
  const orgs = await organizations().catch(() => []);
  const chosen = $("org-select").value;
  $("org-select").replaceChildren(...orgs.map((o) => el("option", { value: o.id, text: o.name })));
  if (chosen) $("org-select").value = chosen;
  await showOrganization();
}

async function showOrganization() {
  const orgs = await organizations();
  const org = orgs.find((o) => o.id === $("org-select").value);
  if (!org) return;
  const max = org.max_apikey_expiration_days;
  $("policy-require").checked = org.require_apikey_expiration;
  $("policy-max").value = max || "";
  $("policy-form").hidden = !["admin", "super_admin"].includes(org.role);
  showApps(org);
  auditBefore = null;
  $("audit-table").tBodies[0].replaceChildren();
  showAudit(org);
  $("org-policy").textContent = `Your role: ${org.role}. Keys ${org.require_apikey_expiration ? "must expire" : "may never expire"}${max ? `, within ${max} days` : ""}.`;
  try {
    const members = (await api("GET", `/organization/members?org_id=${org.id}`)).data;
    $("members").replaceChildren(...members.map((m) => el("li", { text: `${m.email}: ${m.role}` })));
  } catch (error) {
    $("members").replaceChildren(el("li", { text: `Cannot list members: ${error.message}` }));
  }
  try {
    const invites = (await api("GET", `/organization/invites?org_id=${org.id}`)).data;
    $("invites").replaceChildren(
      ...invites.map((i) =>
        el(
          "li",
          {},
          `${i.email} as ${i.role}, expires ${relative(i.expires_at)} `,
          el("button", {
            type: "button",
            text: "Withdraw",
            "aria-label": `Withdraw the invitation of ${i.email}`,
            onclick: async () => {
              await api("DELETE", `/organization/invites?org_id=${org.id}&id=${i.id}`);
              say(`Invitation of ${i.email} withdrawn.`);
              showOrganization();
            },
          }),
        ),
      ),
    );
  } catch {
    $("invites").replaceChildren(el("li", { text: "Only admins see invitations." }));
  }
}

$("org-select").addEventListener("change", showOrganization);

$("policy-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const max = $("policy-max").value.trim();
  const body = {
    org_id: $("org-select").value,
    require_apikey_expiration: $("policy-require").checked,
    max_apikey_expiration_days: max ? Number(max) : null,
  };
  try {
    await api("PUT", "/organization", body);
    cachedOrgs = null;
    say("Expiry policy saved.");
    showOrganization();
  } catch (error) {
    say(`Cannot save the policy: ${error.message}`);
  }
});

async function showApps(org) {
  try {
    const apps = (await api("GET", `/app?org_id=${org.id}`)).data;
    const items = await Promise.all(
      apps.map(async (a) => {
        const bundles = await api("GET", `/bundle?app_id=${encodeURIComponent(a.app_id)}`).then((r) => r.data).catch(() => []);
        const versions = bundles.map((b) => b.version).join(", ") || "no bundles";
        return el("li", { text: `${a.name} (${a.app_id}): ${versions}` });
      }),
    );
    $("apps").replaceChildren(...(items.length ? items : [el("li", { text: "No apps." })]));
  } catch (error) {
    $("apps").replaceChildren(el("li", { text: `Cannot list apps: ${error.message}` }));
  }
}

let auditBefore = null;
const AUDIT_PAGE = 20;

async function showAudit(org) {
  try {
    const before = auditBefore ? `&before=${auditBefore}` : "";
    const events = (await api("GET", `/organization/audit?org_id=${org.id}&limit=${AUDIT_PAGE}${before}`)).data;
    $("audit-table").tBodies[0].append(
      ...events.map((e) =>
        el(
          "tr",
          {},
          el("td", { text: new Date(e.at).toLocaleString() }),
          el("td", { text: e.action }),
          el("td", { text: `${e.target_type} ${e.target_id}` }),
          el("td", { text: e.actor_key_id ? `key ${e.actor_key_id}` : e.actor_user_id || "operator" }),
          el("td", { text: e.ip || "-" }),
        ),
      ),
    );
    auditBefore = events.length ? events[events.length - 1].id : auditBefore;
    $("audit-more").hidden = events.length < AUDIT_PAGE;
  } catch {
    $("audit-table").tBodies[0].replaceChildren(el("tr", {}, el("td", { colspan: "5", text: "The audit log needs the admin right." })));
    $("audit-more").hidden = true;
  }
}

$("audit-more").addEventListener("click", async () => {
  const org = (await organizations()).find((o) => o.id === $("org-select").value);
  if (org) showAudit(org);
});

$("invite-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const body = { org_id: $("org-select").value, email: $("invite-email").value.trim(), role: $("invite-role").value };
  try {
    const invite = (await api("POST", "/organization/invites", body)).invite;
    say(`Invitation for ${invite.email} created.`);
    $("invite-form").reset();
    showSecret(invite.code, `The invitation code for ${invite.email}: send it to them. It is shown once.`);
    $("secret-curl").textContent = `curl -X POST -H "content-type: application/json" -d '{"code": "${invite.code}"}' ${location.origin}/invites/redeem`;
  } catch (error) {
    say(`Cannot invite: ${error.message}`);
  }
});

window.addEventListener("hashchange", route);
route();
