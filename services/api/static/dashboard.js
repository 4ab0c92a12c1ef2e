// Clicktrack dashboard: plain JavaScript, no library, nothing loaded from elsewhere.
// The API key lives in sessionStorage (this tab only) and travels in the Authorization header;
// it never appears in a URL. Text from the API is set with textContent, never parsed as HTML.
"use strict";

const KEY = "clicktrack.apiKey";
// Windows are counted in the organisation's time zone (the API's default, shown on the page);
// 7 and 30 days are drawn as days, not 168 or 720 hourly points.
const RANGES = [
  { id: "24h", label: "Last 24 hours", hours: 24, bucket: "hour" },
  { id: "7d", label: "Last 7 days", hours: 24 * 7, bucket: "day" },
  { id: "30d", label: "Last 30 days", hours: 24 * 30, bucket: "day" },
];
let ZONE = "UTC";  // the organisation's, from the first report
const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (name === "text") node.textContent = value;
    else node.setAttribute(name, value);
  }
  for (const child of children) node.append(child);
  return node;
}

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.detail) || ("HTTP " + status));
    this.status = status;
    this.code = body && body.error;
  }
}

async function api(path, accept, body) {
  const key = sessionStorage.getItem(KEY);
  const headers = { "Authorization": "Bearer " + key, "Accept": accept || "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method: body === undefined ? "GET" : "POST",
    body: body === undefined ? undefined : JSON.stringify(body),
    headers: headers,
    cache: "no-store",
    credentials: "omit",
    referrerPolicy: "no-referrer",
  });
  if (!response.ok) {
    let body = null;
    try { body = await response.json(); } catch (e) { body = null; }
    throw new ApiError(response.status, body);
  }
  return accept ? response.text() : response.json();
}

function windowQuery(range) {
  const to = new Date();
  const from = new Date(to.getTime() - range.hours * 3600 * 1000);
  const q = new URLSearchParams({
    from: from.toISOString(), to: to.toISOString(), bucket: range.bucket,
  });
  return q.toString();
}

const number = new Intl.NumberFormat("en-IN");
function fmt(n) { return number.format(n); }
function when(iso) {
  return iso ? new Date(iso).toLocaleString("en-GB", { timeZone: ZONE }) : "never";
}

function showFreshness(report) {
  ZONE = report.window.tz;
  const lag = report.lag;
  const line = $("freshness");
  let state;
  if (lag.status === "current") state = "counter up to date (0 clicks waiting)";
  else if (lag.status === "behind") state = "counter behind: " + fmt(lag.records) + " clicks not yet counted";
  else state = "counter lag unknown (Kafka did not answer)";
  line.textContent = "As of " + when(report.as_of) + " · " + state +
    " · last counted " + when(lag.last_counted_at) + " · times in " + ZONE;
  line.className = lag.status;
  line.dataset.lagStatus = lag.status;
  line.dataset.asOf = report.as_of;
  line.dataset.timeZone = ZONE;
}

function card(id, label, value, sub, extra) {
  return el("div", { class: "card " + (extra || ""), id: id },
    el("div", { class: "label", text: label }),
    el("div", { class: "value", "data-value": String(value), text: fmt(value) }),
    el("div", { class: "sub", text: sub }));
}

function table(id, headers, rows) {
  const head = el("tr", {}, ...headers.map(([text, cls]) => el("th", { class: cls || "", text })));
  const body = rows.map((cells) => el("tr", {}, ...cells.map(([value, cls]) => {
    const td = el("td", { class: cls || "" });
    if (value instanceof Node) td.append(value); else td.textContent = value;
    return td;
  })));
  return el("table", { id: id }, el("thead", {}, head), el("tbody", {}, ...body));
}

function countCells(t) {
  return [[fmt(t.unique), "num"], [fmt(t.total), "num"], [fmt(t.bots), "num muted"],
    [fmt(t.after_expiry), "num muted"]];
}
const COUNT_HEADERS = [["Unique clicks", "num"], ["Total clicks", "num"], ["Bot clicks", "num"],
  ["After expiry", "num"]];
const REASONS = [["user_agent", "user agent"], ["referrer", "referrer"], ["network", "network"],
  ["head", "HEAD"], ["other", "other"]];
function reasons(t) {
  return REASONS.filter(([k]) => t.bots_by_reason[k]).map(([k, label]) => label + " " + fmt(t.bots_by_reason[k])).join(", ") || "none";
}
const WINDOW_HEADERS = COUNT_HEADERS.map(([text, cls]) => [text + " (window)", cls]);
const FIRST_DAY_HEADERS = COUNT_HEADERS.map(([text, cls]) => [text + " (first 24 h)", cls]);
const ALL_TIME_HEADERS = COUNT_HEADERS.map(([text, cls]) => [text + " (all time)", cls]);

// CSV downloads: the API's CSV (fetched with the key in a header, saved from memory), or a
// table as shown. A cell a spreadsheet would read as a formula gets a leading quote.
function save(name, text) {
  const url = URL.createObjectURL(new Blob([text], { type: "text/csv;charset=utf-8" }));
  const link = el("a", { href: url, download: name, hidden: "" });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}
function csvCell(text) {
  let cell = String(text);
  if (/^[=@\t\r]/.test(cell) || (/^[+-]/.test(cell) && !/^[+-][0-9 ]*$/.test(cell))) cell = "'" + cell;
  return /[",\r\n]/.test(cell) ? '"' + cell.replaceAll('"', '""') + '"' : cell;
}
function tableCsv(id) {
  const rows = [...document.querySelectorAll("#" + id + " tr")];
  return rows.map((tr) => [...tr.children].map((c) => csvCell(c.textContent)).join(",")).join("\r\n") + "\r\n";
}
function csvButton(id, label, make) {
  const b = el("button", { type: "button", class: "csv", id: id, text: label });
  b.addEventListener("click", async () => {
    try { await make(); } catch (e) { b.textContent = label + " (failed: " + e.message + ")"; }
  });
  return b;
}
function tableButton(tableId, name) {
  return csvButton(tableId + "-csv", "Download CSV", async () => save(name, tableCsv(tableId)));
}

// A recipient by the sender's own id; an erased one has none left, only its (random) pseudonym.
function recipientCell(item) {
  return item.recipient === null ? ["erased", "muted"] : [item.recipient];
}

// Who clicked, who did not: pages of 100 from the API, "More" for the next; the whole list as CSV.
function recipientList(base, which, headers, cells) {
  const id = which;
  const holder = el("div", { class: "recipients", id: id + "-list" });
  const body = el("tbody");
  const more = el("button", { type: "button", id: id + "-more", text: "More", hidden: "" });
  let after = null;
  async function load() {
    const q = new URLSearchParams({ limit: "100" });
    if (after !== null) q.set("after", after);
    const page = await api(base + "/" + which + "?" + q.toString());
    for (const item of page.items) {
      body.append(el("tr", {}, ...cells(item).map(([v, cls]) => el("td", { class: cls || "", text: v }))));
    }
    after = page.next_after;
    more.hidden = after === null;
    holder.dataset.loaded = String(body.children.length);
  }
  more.addEventListener("click", () => load());
  holder.append(
    el("table", { id: id }, el("thead", {}, el("tr", {}, ...headers.map(([t, cls]) => el("th", { class: cls || "", text: t })))), body),
    more,
    csvButton(id + "-csv", "Download CSV (all)", async () =>
      save(which + ".csv", await api(base + "/" + which + ".csv", "text/csv"))));
  load().catch((e) => holder.append(el("p", { class: "error", text: "Could not load: " + e.message })));
  return holder;
}

// Resend to non-clickers: one message for everyone; each link in the values must be one of the
// campaign's, and every recipient gets the code they were sent the first time.
function resendForm(report) {
  const c = report.campaign;
  const target = el("select", { id: "resend-link" },
    el("option", { value: "", text: "who clicked none of its links" }),
    ...report.by_link.map((l) => el("option", { value: String(l.link_id), text: "who did not open link " + l.link_id + " (" + l.destination + ")" })));
  const form = el("form", { id: "resend-form", class: "resend", method: "post", action: "#", autocomplete: "off" },
    el("label", { for: "resend-name", text: "Name" }), el("input", { id: "resend-name", required: "", value: c.name + " (resend)" }),
    el("label", { for: "resend-link", text: "To the recipients" }), target,
    el("label", { for: "resend-template", text: "DLT template" }), el("textarea", { id: "resend-template", required: "", rows: "2" }),
    el("label", { for: "resend-values", text: "Slot values, one per line" }), el("textarea", { id: "resend-values", rows: "3" }),
    el("button", { type: "submit", id: "resend-submit", text: "Resend" }),
    el("p", { id: "resend-result", role: "status" }));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const result = $("resend-result");
    const body = {
      name: $("resend-name").value, template: $("resend-template").value,
      values: $("resend-values").value.split("\n").map((v) => v.trim()).filter((v) => v), limit: 0,
    };
    if (target.value) body.link_id = Number(target.value);
    try {
      const made = await api("/v1/campaigns/" + c.id + "/resends", null, body);
      result.replaceChildren("Resend made for " + fmt(made.resend.audience) + " recipients: ",
        el("a", { id: "resend-made", href: "/dashboard/campaigns/" + made.campaign.id, text: made.campaign.name }));
      result.dataset.audience = String(made.resend.audience);
      result.dataset.campaignId = String(made.campaign.id);
    } catch (e) {
      result.textContent = "Not resent: " + e.message;
      result.dataset.error = e.code || "error";
    }
  });
  return form;
}

function resendRows(report) {
  return report.family.filter((f) => f.resend).map((f) => [
    [f.campaign.id === report.campaign.id ? el("strong", { text: f.campaign.name })
      : el("a", { href: "/dashboard/campaigns/" + f.campaign.id, text: f.campaign.name })],
    [f.resend.link_id ? "non-openers of link " + f.resend.link_id : "non-clickers"],
    [fmt(f.resend.audience), "num"], [fmt(f.resend.clicked), "num"], [fmt(f.resend.total), "num"],
    [fmt(f.resend.bots), "num muted"], [fmt(f.resend.after_expiry), "num muted"],
  ]);
}

async function chart(path, range) {
  const holder = el("div", { class: "chart", id: "chart", "aria-busy": "true" });
  api(path + "?" + windowQuery(range), "image/svg+xml").then((text) => {
    const doc = new DOMParser().parseFromString(text, "image/svg+xml");
    const svg = doc.documentElement;
    if (svg.nodeName !== "svg" || doc.querySelector("script")) throw new Error("not a chart");
    holder.replaceChildren(document.importNode(svg, true));
    holder.setAttribute("aria-busy", "false");
  }).catch((e) => {
    holder.replaceChildren(el("p", { class: "error", text: "Chart unavailable: " + e.message }));
  });
  return holder;
}

function rangeButtons(current, onPick) {
  return el("div", { class: "ranges" }, el("span", { text: "Window:" }), ...RANGES.map((r) => {
    const b = el("button", { type: "button", "data-range": r.id, "aria-pressed": String(r === current), text: r.label });
    b.addEventListener("click", () => onPick(r));
    return b;
  }));
}

async function campaignList(range) {
  const report = await api("/v1/report?" + windowQuery(range));
  ZONE = report.window.tz;
  const content = $("content");
  const rows = report.campaigns.map(({ campaign: c, totals }) => [
    [el("a", { href: "/dashboard/campaigns/" + c.id, text: c.name })],
    [c.kind.replaceAll("_", " ")], [c.channel], [when(c.created_at)], ...countCells(totals),
  ]);
  content.replaceChildren(
    el("h2", { text: "Campaigns" }),
    el("div", { class: "cards" },
      card("org-unique", "Unique clicks", report.totals.unique, "all time, distinct visitors"),
      card("org-total", "Total clicks", report.totals.total, "all time"),
      card("org-bots", "Bot clicks", report.totals.bots, "kept apart; by reason: " + reasons(report.totals), "bots"),
      card("org-after-expiry", "After expiry", report.totals.after_expiry, "taps on expired links, kept apart", "bots")),
    rangeButtons(range, (r) => campaignList(r)),
    await chart("/v1/chart.svg", range),
    el("h3", { text: "Campaigns (all time)" }),
    rows.length ? table("campaigns", [["Campaign"], ["Kind"], ["Channel"], ["Created"], ...COUNT_HEADERS], rows)
      : el("p", { text: "No campaigns yet." }),
    tableButton("campaigns", "campaigns.csv"),
  );
  if (report.campaigns_truncated) content.append(el("p", { text: "Showing the newest 500 campaigns." }));
  showFreshness(report);
}

async function campaignPage(id, range) {
  const report = await api("/v1/campaigns/" + id + "/report?" + windowQuery(range));
  ZONE = report.window.tz;
  const c = report.campaign;
  document.title = c.name + " · Clicktrack";
  $("where").replaceChildren(el("a", { href: "/dashboard", text: "Campaigns" }), " / " + c.name);
  const byLink = report.by_link.map((l) => [
    [String(l.link_id)], [el("span", { class: "destination", text: l.destination })],
    ...countCells(l), ...countCells(l.totals),
  ]);
  const byChannel = report.by_channel.map((ch) => [[ch.channel], ...countCells(ch)]);
  const family = report.family.map((f) => [
    [f.campaign.id === c.id ? el("strong", { text: f.campaign.name })
      : el("a", { href: "/dashboard/campaigns/" + f.campaign.id, text: f.campaign.name })],
    [f.campaign.kind.replaceAll("_", " ")], [when(f.campaign.created_at)],
    ...countCells(f.first_24h), ...countCells(f.totals),
  ]);
  const inWindow = report.in_window;
  const resent = report.resend ? " · resent to " + fmt(report.resend.audience) + " recipients who had not " +
    (report.resend.link_id ? "opened link " + report.resend.link_id : "clicked") + ": " + fmt(report.resend.clicked) +
    " clicked since (" + fmt(report.resend.total) + " clicks, counted on the original's links)" : "";
  $("content").replaceChildren(
    el("h2", { id: "campaign-name", text: c.name }),
    el("p", { id: "campaign-about", text: c.kind.replaceAll("_", " ") + " campaign on " + c.channel + ", created " + when(c.created_at) + resent }),
    el("div", { class: "cards" },
      card("unique-clicks", "Unique clicks", report.totals.unique, fmt(inWindow.unique) + " in the window"),
      card("total-clicks", "Total clicks", report.totals.total, fmt(inWindow.total) + " in the window"),
      card("bot-clicks", "Bot clicks", report.totals.bots, "kept apart; by reason: " + reasons(report.totals), "bots"),
      card("after-expiry", "After expiry", report.totals.after_expiry, "taps on expired links, kept apart", "bots")),
    rangeButtons(range, (r) => campaignPage(id, r)),
    await chart("/v1/campaigns/" + id + "/chart.svg", range),
    csvButton("report-csv", "Download the window as CSV (by bucket, link and channel)", async () =>
      save("campaign-" + id + ".csv", await api("/v1/campaigns/" + id + "/report.csv?" + windowQuery(range), "text/csv"))),
    el("h3", { text: "By channel (window)" }),
    byChannel.length ? table("by-channel", [["Channel"], ...COUNT_HEADERS], byChannel)
      : el("p", { id: "by-channel", text: "No clicks in the window." }),
    tableButton("by-channel", "by-channel.csv"),
    el("h3", { text: "By link" }),
    table("by-link", [["Link"], ["Destination"], ...WINDOW_HEADERS, ...ALL_TIME_HEADERS], byLink),
    tableButton("by-link", "by-link.csv"),
    el("h3", { text: "Original, resends and recurrences: the first 24 hours after each" }),
    table("family", [["Campaign"], ["Kind"], ["Created"], ...FIRST_DAY_HEADERS, ...ALL_TIME_HEADERS], family),
    tableButton("family", "family.csv"),
    ...(resendRows(report).length ? [
      el("h3", { text: "Resends to non-clickers: their audience, and its clicks since (on the original's links)" }),
      table("resends", [["Resend"], ["To"], ["Audience", "num"], ["Clicked", "num"], ["Clicks", "num"], ["Bot clicks", "num"], ["After expiry", "num"]], resendRows(report)),
      tableButton("resends", "resends.csv")] : []),
    el("h3", { text: "Resend to those who did not click" }),
    resendForm(report),
    el("h3", { text: "Who clicked" }),
    recipientList("/v1/campaigns/" + id, "clickers",
      [["Recipient"], ["Clicks", "num"], ["Bot clicks", "num"], ["After expiry", "num"], ["First click"], ["Last click"]],
      (c) => [recipientCell(c), [fmt(c.clicks), "num"], [fmt(c.bot_clicks), "num muted"],
        [fmt(c.after_expiry), "num muted"], [when(c.first_click)], [when(c.last_click)]]),
    el("h3", { text: "Who did not click" }),
    recipientList("/v1/campaigns/" + id, "non-clickers", [["Recipient"]], (n) => [recipientCell(n)]),
    el("p", { class: "sub", text: "Unique clicks: the distinct visitors of that campaign, link or channel in that period (a visitor who taps two links is one unique of the campaign). Times and days in " + report.window.tz + "." }),
  );
  showFreshness(report);
}

function signIn() {
  $("login").hidden = false;
  $("content").hidden = true;
  $("logout").hidden = true;
  $("api-key").focus();
}

async function show() {
  if (!sessionStorage.getItem(KEY)) return signIn();
  $("login").hidden = true;
  $("content").hidden = false;
  $("logout").hidden = false;
  const match = location.pathname.match(/^\/dashboard\/campaigns\/(\d+)$/);
  try {
    if (match) await campaignPage(match[1], RANGES[1]);
    else await campaignList(RANGES[1]);
  } catch (e) {
    if (e.status === 401) {
      sessionStorage.removeItem(KEY);
      $("login-error").textContent = "That API key was not accepted: " + e.message;
      return signIn();
    }
    $("content").replaceChildren(el("p", { class: "error", id: "load-error", text: "Could not load: " + e.message }));
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("api-key").value.trim();
    $("api-key").value = "";
    if (!key) return;
    sessionStorage.setItem(KEY, key);
    $("login-error").textContent = "";
    show();
  });
  $("logout").addEventListener("click", () => {
    sessionStorage.removeItem(KEY);
    location.assign("/dashboard");
  });
  show();
});
