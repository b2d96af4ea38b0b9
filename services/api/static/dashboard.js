// EZREC dashboard: plain JS, no build step. Reads the API with the token the operator enters once
// (kept in localStorage) and follows the device live through /events (Server-Sent Events).
"use strict";

const TOKEN_KEY = "ezrec.token";
const STATUS_LABELS = {
  confirmed: "Confirmed",
  recording: "Recording",
  missed: "Missed",
  completed: "Recorded",
  video_processed: "Processed",
  video_uploaded: "Ready",
};
const $ = (id) => document.getElementById(id);

const state = {
  token: localStorage.getItem(TOKEN_KEY),
  camera: null,
  bookings: new Map(),
  recording: null, // the booking being recorded, as last learnt (event or status snapshot)
  recordingAt: 0, // when that was learnt (ms since epoch): an older snapshot never overrides a newer event
  snapshot: null,
  progress: new Map(),
  failures: new Map(),
  services: {},
  events: null,
  reloadTimer: null,
  device: [], // GET /device/services: each service's availability, pid and recent records
  deviceLogs: new Map(), // "service/instance" -> the latest ServiceLogs heard live
  outbox: undefined, // GET /outbox (null: no cloud outbox on this device)
  refreshTimer: null,
  playing: null, // the video in the player (its share link is made on demand)
};

// ---- API ------------------------------------------------------------------------------------------

class Unauthorized extends Error {}

async function api(path) {
  const res = await fetch(path, { headers: { Authorization: `Bearer ${state.token}` } });
  if (res.status === 401) throw new Unauthorized("the token was refused");
  return res;
}

async function json(path) {
  const res = await api(path);
  if (res.status === 404) return null;
  if (!res.ok) throw new Error(`${path}: HTTP ${res.status}`);
  return res.json();
}

class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

// A write (POST/DELETE) with the token; the API's `detail` becomes the error's message.
async function send(method, path, body) {
  const init = { method, headers: { Authorization: `Bearer ${state.token}` } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  if (res.status === 401) throw new Unauthorized("the token was refused");
  const data = await res.json().catch(() => null);
  if (!res.ok) throw new ApiError(detailOf(data) || `HTTP ${res.status}`, res.status);
  return data;
}

function detailOf(data) {
  if (!data || data.detail === undefined) return "";
  return typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail);
}

const isObject = (value) => value !== null && typeof value === "object" && !Array.isArray(value);
const isId = (value) => typeof value === "string" && /^[A-Za-z0-9_-]{1,64}$/.test(value);

const withToken = (path) => `${path}${path.includes("?") ? "&" : "?"}token=${encodeURIComponent(state.token)}`;

// ---- bookings -------------------------------------------------------------------------------------

function today() {
  const start = new Date();
  start.setHours(0, 0, 0, 0);
  const end = new Date(start);
  end.setDate(end.getDate() + 1);
  return [start, end];
}

function isToday(booking) {
  const [start, end] = today();
  return new Date(booking.end_time) > start && new Date(booking.start_time) < end;
}

async function loadBookings() {
  const [start, end] = today();
  const list = await json(`bookings?from=${start.toISOString()}&to=${end.toISOString()}`);
  state.bookings = new Map((Array.isArray(list) ? list : []).map((b) => [b.id, b]));
  for (const notes of [state.progress, state.failures]) {
    for (const id of notes.keys()) if (!state.bookings.has(id)) notes.delete(id);
  }
  renderBookings();
}

async function refreshBooking(id) {
  if (!isId(id)) return;
  const booking = await json(`bookings/${encodeURIComponent(id)}`);
  if (booking && isToday(booking)) state.bookings.set(booking.id, booking);
  else state.bookings.delete(id);
  renderBookings();
}

function scheduleReload() {
  clearTimeout(state.reloadTimer);
  state.reloadTimer = setTimeout(() => loadBookings().catch(onError), 200);
}

function inSlot(booking, at = Date.now()) {
  return new Date(booking.start_time).getTime() <= at && at < new Date(booking.end_time).getTime();
}

function setRecording(id, at = Date.now()) {
  if (at < state.recordingAt) return; // older news than what the page already knows
  state.recording = id || null;
  state.recordingAt = at;
  renderBookings();
  if (state.snapshot) renderHealth(state.snapshot);
}

const hhmm = (iso) => new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });

function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function renderBookings() {
  const rows = $("booking-rows");
  rows.replaceChildren();
  const list = [...state.bookings.values()].sort((a, b) => a.start_time.localeCompare(b.start_time));
  for (const b of list) {
    const row = rows.insertRow();
    row.dataset.bookingId = b.id;
    cell(row, `${hhmm(b.start_time)}–${hhmm(b.end_time)}`, "time");
    cell(row, b.id, "booking");
    cell(row, b.user_id, "user");
    const live = state.recording === b.id && b.status === "confirmed" ? "recording" : b.status;
    const td = row.insertCell();
    td.className = "state";
    const badge = document.createElement("span");
    badge.className = `status status-${live}`;
    badge.dataset.status = live;
    badge.textContent = STATUS_LABELS[live] || live;
    td.append(badge);
    td.title = b.status_reason || "";
    const note = noteFor(b);
    if (note) {
      const span = document.createElement("span");
      span.className = "note";
      span.textContent = note;
      td.append(span);
    }
  }
  $("no-bookings").hidden = list.length > 0;
  knownUsers();
}

function noteFor(booking) {
  if (booking.status === "missed") return booking.status_reason || "";
  if (booking.status === "video_uploaded") return ""; // ready: nothing pending can be failing or processing
  if (state.failures.has(booking.id)) return state.failures.get(booking.id);
  return state.progress.has(booking.id) ? `processing ${state.progress.get(booking.id)}%` : "";
}

// ---- device health --------------------------------------------------------------------------------

const fmt = (value, unit, digits = 0) => (value === null || value === undefined ? "–" : `${Number(value).toFixed(digits)}${unit}`);

function duration(seconds) {
  const h = Math.floor(seconds / 3600);
  return h >= 24 ? `${Math.floor(h / 24)} d ${h % 24} h` : `${h} h ${Math.floor((seconds % 3600) / 60)} min`;
}

// A status snapshot as the status service publishes it (the relay checks; the page does not trust blindly).
const isSnapshot = (value) => isObject(value) && typeof value.camera_id === "string"
  && !Number.isNaN(new Date(value.collected_at).getTime()) && typeof value.cpu_percent === "number";

function renderHealth(snapshot) {
  if (!isSnapshot(snapshot)) return; // not a status snapshot: keep showing the last one
  state.snapshot = snapshot;
  $("health-empty").hidden = true;
  const rows = [
    ["CPU", fmt(snapshot.cpu_percent, " %")],
    ["Load", fmt(snapshot.load_1m, "", 2)],
    ["Memory", fmt(snapshot.memory_percent, " %")],
    ["Disk free", `${fmt(snapshot.disk_free_gb, " GB", 1)} of ${fmt(snapshot.disk_total_gb, " GB", 0)}`],
    ["Temperature", fmt(snapshot.cpu_temperature_c, " °C", 1)],
    ["Uptime", duration(Number(snapshot.uptime_s) || 0)],
    ["Recording", state.recording || "nothing"],
    ["Reported", new Date(snapshot.collected_at).toLocaleTimeString()],
  ];
  if (Array.isArray(snapshot.alerts_active) && snapshot.alerts_active.length) {
    rows.push(["Alerts", snapshot.alerts_active.map(String).join(", ")]);
  }
  const list = $("health-list");
  list.replaceChildren();
  for (const [name, value] of rows) {
    const dt = document.createElement("dt");
    dt.textContent = name;
    const dd = document.createElement("dd");
    dd.textContent = value;
    list.append(dt, dd);
  }
  if (isObject(snapshot.services)) {
    for (const [name, availability] of Object.entries(snapshot.services)) {
      if (typeof availability === "string") state.services[name] = availability;
    }
  }
  renderServices();
}

function onStatus(snapshot) {
  if (!isSnapshot(snapshot)) return;
  setRecording(isId(snapshot.recording_now) ? snapshot.recording_now : null, new Date(snapshot.collected_at).getTime());
  renderHealth(snapshot);
}

function renderServices() {
  renderDevice(); // the Services panel shows the same availability as these pills
  const list = $("services");
  list.replaceChildren();
  for (const [name, availability] of Object.entries(state.services).sort()) {
    const li = document.createElement("li");
    li.textContent = `${name}: ${availability}`;
    li.className = availability === "online" ? "online" : "offline";
    list.append(li);
  }
}

async function loadStatus() {
  const row = await json("status");
  if (isObject(row)) onStatus(row.snapshot);
}

// ---- operator actions: results, ages -----------------------------------------------------------------

function setResult(id, text, bad = false) {
  const el = $(id);
  el.textContent = text;
  el.className = `result${bad ? " bad" : ""}`;
}

function actionFailed(id, err) {
  if (err instanceof Unauthorized) onError(err);
  else setResult(id, err.message || String(err), true);
}

function ago(seconds) {
  const s = Math.max(0, Number(seconds) || 0);
  if (s < 90) return `${Math.round(s)} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  if (s < 172800) return `${(s / 3600).toFixed(1)} h ago`;
  return `${(s / 86400).toFixed(1)} days ago`;
}

function element(tag, className, text) {
  const el = document.createElement(tag);
  if (className) el.className = className;
  if (text !== undefined) el.textContent = text;
  return el;
}

function facts(pairs) {
  const dl = document.createElement("dl");
  for (const [name, value] of pairs) {
    if (value === null || value === undefined || value === "") continue;
    const dd = document.createElement("dd");
    if (value instanceof Node) dd.append(value);
    else dd.textContent = value;
    dl.append(element("dt", "", name), dd);
  }
  return dl;
}

// ---- services: availability, recent warnings, restart, snapshot -------------------------------------

const SERVICE_NAMES = ["api", "recorder", "worker", "status"];
const LOGS_TOPIC = /^(api|recorder|worker|status)\/logs(?:\/([A-Za-z0-9_-]{1,48}))?$/;

async function loadDevice() {
  const list = await json("device/services");
  state.device = Array.isArray(list) ? list.filter((s) => isObject(s) && SERVICE_NAMES.includes(s.service)) : [];
  state.deviceLogs.clear(); // the API's copy is as new as anything heard so far
  renderDevice();
}

function recordItem(record) {
  const li = document.createElement("li");
  const when = new Date(record.at);
  li.append(element("time", "", Number.isNaN(when.getTime()) ? "" : when.toLocaleString()), " ",
    element("span", `lvl lvl-${record.level}`, String(record.level)), " ",
    element("span", "logger", String(record.logger)), " ", String(record.message));
  return li;
}

function renderDevice() {
  const list = $("device-list");
  list.replaceChildren();
  for (const entry of state.device) {
    const name = entry.service + (entry.instance ? `/${entry.instance}` : "");
    const live = state.deviceLogs.get(`${entry.service}/${entry.instance || ""}`);
    const records = (live ? live.records : entry.records).filter(isObject);
    const availability = state.services[entry.service] || entry.availability;
    const card = element("article", "svc");
    card.dataset.service = entry.service;
    const head = element("div", "svc-head");
    head.append(element("strong", "", name), element("span", `badge badge-${availability}`, availability));
    if (entry.pid) head.append(element("span", "muted", `pid ${entry.pid}`));
    const restart = element("button", "restart", "Restart");
    restart.type = "button";
    restart.addEventListener("click", () => restartService(entry.service, restart));
    head.append(restart);
    card.append(head);
    const errors = records.filter((r) => r.level !== "WARNING").length;
    if (records.length) {
      const last = records[records.length - 1];
      card.append(element("p", "svc-last", `${new Date(last.at).toLocaleTimeString()} ${last.level} ${last.message}`));
      const details = element("details");
      const summary = `${records.length} recent warning${records.length === 1 ? "" : "s"}` +
        (errors ? ` (${errors} error${errors === 1 ? "" : "s"})` : "");
      details.append(element("summary", "", summary));
      const ol = element("ol", "records");
      for (const record of [...records].reverse()) ol.append(recordItem(record));
      details.append(ol);
      card.append(details);
    } else {
      card.append(element("p", "svc-last muted", "No warnings or errors."));
    }
    list.append(card);
  }
}

function onServiceLogs(payload, service, instance) {
  if (!isObject(payload) || !Array.isArray(payload.records) || payload.service !== service) return;
  state.deviceLogs.set(`${service}/${instance || ""}`, payload);
  if (!state.device.some((e) => e.service === service && (e.instance || "") === (instance || ""))) {
    state.device = state.device.filter((e) => !(e.service === service && !e.records.length && !e.instance));
    state.device.push({ service, instance: instance || null, availability: "unknown", pid: null, records: [] });
  }
  renderDevice();
}

async function restartService(service, button) {
  const sure = confirm(`Restart the ${service} service?\n\nIt stops cleanly (a recording under way closes its ` +
    "segment and resumes) and is started again at once.");
  if (!sure) return;
  button.disabled = true;
  setResult("device-result", `Restarting ${service}…`);
  try {
    const result = await send("POST", `device/services/${encodeURIComponent(service)}/restart`,
      { reason: "from the dashboard" });
    const outcome = result.ack ? result.ack.outcome : "no answer";
    setResult("device-result", `${service}: ${outcome}. ${result.message}`, outcome !== "accepted");
  } catch (err) {
    actionFailed("device-result", err);
  } finally {
    button.disabled = false;
    setTimeout(() => loadDevice().catch(onError), 3000);
  }
}

async function snapshotNow() {
  const button = $("snapshot");
  button.disabled = true;
  setResult("device-result", "Asking the status service for a snapshot…");
  try {
    const result = await send("POST", "device/status/snapshot");
    if (result.snapshot) {
      onStatus(result.snapshot);
      setResult("device-result", `Status snapshot collected at ${new Date(result.snapshot.collected_at).toLocaleTimeString()}.`);
    } else {
      setResult("device-result", `No snapshot: ${result.message}`, true);
    }
  } catch (err) {
    actionFailed("device-result", err);
  } finally {
    button.disabled = false;
  }
}

// ---- cloud writes (the outbox) ------------------------------------------------------------------------

async function loadOutbox() {
  const res = await api("outbox");
  if (res.status === 404) {
    const detail = detailOf(await res.json().catch(() => null));
    if (detail.startsWith("no cloud outbox")) {
      state.outbox = null;
      renderOutbox(detail);
      return;
    }
  }
  if (!res.ok) throw new Error(`outbox: HTTP ${res.status}`);
  state.outbox = await res.json();
  renderOutbox();
}

function heldList(op) {
  const ul = element("ul");
  for (const held of op.holds) ul.append(element("li", "", String(held.what)));
  return ul;
}

function opCard(op) {
  const card = element("article", "op");
  card.dataset.opId = String(op.id);
  const head = element("div", "op-head");
  head.append(element("span", `badge badge-${op.state}`, op.state === "refused" ? "Refused" : "Retrying"),
    element("strong", "", String(op.what)), element("span", "muted", `#${op.id}`));
  card.append(head);
  const booking = isObject(op.booking) ? `${op.booking.id} · ${op.booking.user_id} · ${op.booking.status} here` : op.key;
  const since = op.state === "refused" ? "Refused" : "Queued";
  const pairs = [["Booking", booking], [since, ago(op.age_s)], ["Error", op.error || ""],
    ["Attempts", op.state === "retrying" ? String(op.attempts) : ""]];
  if (Array.isArray(op.holds) && op.holds.length) {
    pairs.push([`Holds back ${op.holds.length} write${op.holds.length === 1 ? "" : "s"}`, heldList(op)]);
  }
  card.append(facts(pairs));
  if (op.state === "refused") {
    const actions = element("div", "op-actions");
    const replay = element("button", "replay", "Replay");
    replay.type = "button";
    replay.title = "Send it again (once its cause is fixed); the writes it holds back follow";
    replay.addEventListener("click", () => replayOp(op, replay));
    const drop = element("button", "drop danger", "Drop…");
    drop.type = "button";
    drop.title = "Give it up for good (asks first, and says what the booking loses)";
    drop.addEventListener("click", () => dropOp(op, drop));
    actions.append(replay, drop);
    card.append(actions);
  }
  return card;
}

function renderOutbox(noCloud) {
  const list = $("outbox-list");
  list.replaceChildren();
  $("outbox-faults").replaceChildren();
  const view = state.outbox;
  $("outbox-none").hidden = view !== null;
  if (view === null) {
    $("outbox-none").textContent = `${noCloud}.`;
    $("outbox-summary").textContent = "";
    $("outbox-empty").hidden = true;
    $("outbox-dropped").hidden = true;
    return;
  }
  const onTheirWay = Math.max(0, view.pending - view.held);
  $("outbox-summary").textContent = `${view.refused} refused · ${view.held} held back · ${onTheirWay} on their way`;
  const shown = view.ops.filter((op) => isObject(op) && op.state !== "held");
  for (const op of shown) list.append(opCard(op));
  if (view.not_listed) {
    list.append(element("p", "muted", `${view.not_listed} older refused status row(s) not listed (each supersedes ` +
      "the last)."));
  }
  for (const fault of view.faults || []) $("outbox-faults").append(element("li", "", String(fault.message)));
  $("outbox-empty").hidden = shown.length > 0 || (view.faults || []).length > 0;
  const dropped = view.dropped || [];
  $("outbox-dropped").hidden = dropped.length === 0;
  $("outbox-dropped-list").replaceChildren(...dropped.map((d) => element("li", "",
    `#${d.id} ${d.what} (${d.key}), dropped ${new Date(d.dropped_at).toLocaleString()}`)));
}

async function replayOp(op, button) {
  button.disabled = true;
  setResult("outbox-result", `Replaying #${op.id}: ${op.what}…`);
  try {
    const result = await send("POST", `outbox/${op.id}/replay`);
    setResult("outbox-result", `#${op.id}: ${result.outcome}. ${result.detail}`, result.outcome !== "applied");
  } catch (err) {
    actionFailed("outbox-result", err);
  } finally {
    button.disabled = false;
    loadOutbox().catch(onError);
  }
}

async function dropOp(op, button) {
  if (!confirm(`Drop #${op.id}: ${op.what}?\n\n${op.if_dropped || ""}\n\nThe cloud will never get it.`)) return;
  button.disabled = true;
  try {
    const result = await send("DELETE", `outbox/${op.id}`);
    setResult("outbox-result", `Dropped #${op.id}: ${result.what}. ${result.lost}`);
  } catch (err) {
    actionFailed("outbox-result", err);
  } finally {
    button.disabled = false;
    loadOutbox().catch(onError);
  }
}

// ---- logos: each user's logo placements, with the API's preview ------------------------------------

const CORNER_NAMES = { "top-right": "Top right", "top-left": "Top left", "bottom-right": "Bottom right",
  "bottom-left": "Bottom left" };
const logos = { user: null, settings: null, previewUrl: null };

function knownUsers() {
  const users = new Set([...state.bookings.values()].map((b) => b.user_id).filter(isId));
  $("logo-users").replaceChildren(...[...users].sort().map((u) => { const o = element("option"); o.value = u; return o; }));
}

async function loadLogos(userId) {
  if (!isId(userId)) {
    setResult("logos-result", "A user id is letters, digits, - and _ (at most 64).", true);
    return;
  }
  setResult("logos-result", "");
  const settings = await json(`users/${encodeURIComponent(userId)}/settings`);
  logos.user = userId;
  logos.settings = isObject(settings) ? settings : { logo_path: null, sponsor_logo_paths: [] };
  renderLogoRows();
  $("logo-editor").hidden = false;
  await loadPreview();
}

function logoSlots(settings) {
  const slots = [];
  if (settings.logo_path) slots.push({ key: "logo", name: "Logo", path: settings.logo_path,
    placement: settings.logo_placement || null });
  const sponsors = Array.isArray(settings.sponsor_logo_paths) ? settings.sponsor_logo_paths : [];
  const placements = Array.isArray(settings.sponsor_logo_placements) ? settings.sponsor_logo_placements : [];
  sponsors.forEach((path, i) => slots.push({ key: `sponsor-${i}`, name: `Sponsor logo ${i + 1}`, path,
    placement: placements[i] || null }));
  return slots;
}

function numberField(label, name, value, min, max) {
  const wrap = element("label", "", label);
  const input = element("input");
  Object.assign(input, { type: "number", name, min: String(min), max: String(max), step: "0.5", required: true });
  input.value = String(Math.round(value * 1000) / 10);
  wrap.append(input);
  return wrap;
}

function renderLogoRows() {
  const rows = $("logo-rows");
  rows.replaceChildren();
  const slots = logoSlots(logos.settings);
  $("logo-none").hidden = slots.length > 0;
  $("logo-save").hidden = $("logo-reset").hidden = slots.length === 0;
  for (const slot of slots) {
    const row = element("fieldset", "logo-row");
    row.dataset.slot = slot.key;
    row.append(element("legend", "", `${slot.name} · ${slot.path.split("/").pop()}`));
    const fields = element("div", "logo-fields");
    const cornerLabel = element("label", "", "Corner");
    const corner = element("select");
    corner.name = "corner";
    const auto = element("option", "", "Default");
    auto.value = "";
    corner.append(auto, ...Object.entries(CORNER_NAMES).map(([value, text]) => {
      const o = element("option", "", text);
      o.value = value;
      return o;
    }));
    corner.value = slot.placement ? slot.placement.corner : "";
    cornerLabel.append(corner);
    const p = slot.placement || { width_fraction: 0.15, margin_fraction: 0.02 };
    const width = numberField("Width, % of the video", "width", p.width_fraction, 2, 50);
    const margin = numberField("Margin, % of the width", "margin", p.margin_fraction, 0, 20);
    const sync = () => { for (const f of [width, margin]) f.querySelector("input").disabled = corner.value === ""; };
    corner.addEventListener("change", sync);
    sync();
    fields.append(cornerLabel, width, margin);
    row.append(fields, element("p", "error"));
    rows.append(row);
  }
}

function placementOf(row) {
  const corner = row.querySelector("select[name=corner]").value;
  if (!corner) return null;
  const pct = (name) => Number(row.querySelector(`input[name=${name}]`).value) / 100;
  return { corner, width_fraction: pct("width"), margin_fraction: pct("margin") };
}

async function saveLogos(event) {
  event.preventDefault();
  const rows = [...$("logo-rows").querySelectorAll(".logo-row")];
  for (const row of rows) row.querySelector(".error").textContent = "";
  const body = { logo_placement: null, sponsor_logo_placements: [] };
  for (const row of rows) {
    if (row.dataset.slot === "logo") body.logo_placement = placementOf(row);
    else body.sponsor_logo_placements.push(placementOf(row));
  }
  const button = $("logo-save");
  button.disabled = true;
  try {
    logos.settings = await send("PUT", `users/${encodeURIComponent(logos.user)}/settings/logo_placements`, body);
    renderLogoRows();
    setResult("logos-result", `Saved: ${logos.user}'s next booking uses these placements.`);
    await loadPreview();
  } catch (err) {
    if (err instanceof ApiError && err.status === 422) showLogoErrors(err.message, rows);
    else actionFailed("logos-result", err);
  } finally {
    button.disabled = false;
  }
}

// A 422 names its field (["body", "sponsor_logo_placements", 1, "width_fraction"]): shown on that logo's row.
function showLogoErrors(message, rows) {
  let errors;
  try { errors = JSON.parse(message); } catch { errors = null; }
  if (!Array.isArray(errors)) { setResult("logos-result", message, true); return; }
  const unplaced = [];
  for (const e of errors.filter(isObject)) {
    const loc = Array.isArray(e.loc) ? e.loc : [];
    const key = loc[1] === "logo_placement" ? "logo" : loc[1] === "sponsor_logo_placements" ? `sponsor-${loc[2]}` : null;
    const row = rows.find((r) => r.dataset.slot === key);
    const field = loc.slice(row ? 3 : 1).join(".");
    const text = field ? `${field}: ${e.msg}` : String(e.msg);
    if (row) row.querySelector(".error").textContent += `${text} `;
    else unplaced.push(text);
  }
  setResult("logos-result", `Not saved. ${unplaced.join(" ")}`.trim(), true);
}

async function loadPreview() {
  const img = $("logo-preview");
  const res = await api(`users/${encodeURIComponent(logos.user)}/preview.jpg?width=960`);
  if (!res.ok) throw new Error(`preview: HTTP ${res.status}`);
  const warnings = res.headers.get("X-Logo-Warnings");
  const blob = await res.blob();
  if (logos.previewUrl) URL.revokeObjectURL(logos.previewUrl);
  logos.previewUrl = URL.createObjectURL(blob);
  img.src = logos.previewUrl;
  const note = $("logo-preview-note");
  note.textContent = warnings ? `Left out: ${warnings}` : "Preview at the camera's format (a drawn court).";
  note.className = warnings ? "error" : "muted";
}

// ---- videos ---------------------------------------------------------------------------------------

async function loadVideos() {
  const videos = (await json("videos?limit=8")) || [];
  const grid = $("video-grid");
  grid.replaceChildren();
  for (const v of videos) {
    const card = document.createElement("button");
    card.type = "button";
    card.className = "video-card";
    card.dataset.videoId = v.id;
    const img = document.createElement("img");
    img.alt = `Thumbnail of ${v.booking_id}`;
    img.loading = "lazy";
    img.src = withToken(`videos/${encodeURIComponent(v.id)}/thumbnail`);
    const label = document.createElement("span");
    label.textContent = `${v.booking_id} · ${Math.round(v.duration_seconds)} s · ${new Date(v.created_at).toLocaleString()}`;
    if (v.kind === "highlight") {
      const badge = document.createElement("b");
      badge.className = "badge-highlight";
      badge.textContent = "Highlight";
      label.prepend(badge, " ");
      card.classList.add("highlight");
    }
    card.append(img, label);
    card.addEventListener("click", () => play(v));
    grid.append(card);
  }
  $("no-videos").hidden = videos.length > 0;
}

function play(video) {
  $("player-box").hidden = false;
  const what = video.kind === "highlight" ? "Highlight of " : "";
  $("player-title").textContent = `${what}${video.booking_id} (${video.user_id})`;
  state.playing = video;
  $("share-url").hidden = true;
  $("share-button").onclick = () => shareVideo().catch(onError);
  const player = $("player");
  player.src = withToken(`videos/${encodeURIComponent(video.id)}/download?inline=true`);
  player.play().catch(() => {});
}

// A share link for the video being played (the existing signed links: a page with a player, no token needed).
async function shareVideo() {
  const video = state.playing;
  if (!video) return;
  const link = await send("POST", `videos/${encodeURIComponent(video.id)}/share`, {});
  const field = $("share-url");
  field.value = new URL(link.url, location.href).href;
  field.hidden = false;
  field.select();
}

// ---- live events ----------------------------------------------------------------------------------

function setLive(on) {
  const pill = $("live");
  pill.hidden = false;
  pill.textContent = on ? "live" : "reconnecting";
  pill.className = `pill ${on ? "pill-on" : "pill-off"}`;
}

function onEvent(event) {
  if (!isObject(event) || typeof event.topic !== "string") return;
  const { topic, payload } = event;
  const parts = topic.split("/");
  if (parts[1] === "media") return;
  if (state.camera && parts[1] !== state.camera) return;
  const kind = parts.slice(2).join("/");
  const id = isObject(payload) && isId(payload.booking_id) ? payload.booking_id : undefined;
  const booking = id === undefined ? undefined : state.bookings.get(id);
  if (kind.startsWith("recording/") || kind.startsWith("video/")) {
    if (id === undefined) return; // not a booking event
  }
  switch (kind) {
    case "bookings":
      scheduleReload();
      break;
    case "recording/started":
    case "recording/segment":
      setRecording(id);
      if (kind === "recording/started") refreshBooking(id).catch(onError);
      break;
    case "recording/finished":
      if (state.recording === id) setRecording(null);
      refreshBooking(id).catch(onError);
      break;
    case "video/progress":
      if (!booking || typeof payload.percent !== "number") break; // only today's bookings are shown
      state.progress.set(id, Math.round(payload.percent));
      // The worker processes segments while the camera records: progress inside the slot means recording.
      if (booking.status === "confirmed" && inSlot(booking) && state.recording !== id) setRecording(id);
      else renderBookings();
      break;
    case "video/processed":
      state.progress.delete(id);
      refreshBooking(id).catch(onError);
      break;
    case "video/uploaded":
      state.progress.delete(id);
      state.failures.delete(id);
      refreshBooking(id).catch(onError);
      loadVideos().catch(onError);
      break;
    case "highlight/created":
      loadVideos().catch(onError);
      break;
    case "video/failed":
      // A ready video has nothing left to fail: a late or forged failure is not shown.
      if (!booking || booking.status === "video_uploaded") break;
      state.failures.set(id, `${String(payload.element)} failed${payload.final ? "" : ", retrying"}`);
      refreshBooking(id).catch(onError);
      break;
    case "status":
      onStatus(payload);
      break;
    case "operator/action":
      if (isObject(payload) && String(payload.action).startsWith("outbox_")) loadOutbox().catch(onError);
      break;
    case "alerts":
      if (isObject(payload) && String(payload.kind).startsWith("cloud_")) loadOutbox().catch(onError);
      break;
    default: {
      if (parts.length === 4 && parts[3] === "availability" && typeof payload === "string") {
        state.services[parts[2]] = payload;
        renderServices();
        break;
      }
      const logs = LOGS_TOPIC.exec(kind);
      if (logs) onServiceLogs(payload, logs[1], logs[2]);
    }
  }
}

function connectEvents() {
  if (state.events) state.events.close();
  const events = new EventSource(withToken("events"));
  state.events = events;
  events.onopen = () => setLive(true);
  events.onmessage = (e) => {
    try {
      onEvent(JSON.parse(e.data));
    } catch (err) {
      console.error("event not understood", err);
    }
  };
  events.onerror = () => {
    setLive(false);
    if (events.readyState === EventSource.CLOSED) {
      // Refused (e.g. the token changed) or the server went away: check the token, then try again.
      setTimeout(() => json("health").then(() => start()).catch(onError), 5000);
    }
  };
}

// ---- start-up -------------------------------------------------------------------------------------

function onError(err) {
  if (err instanceof Unauthorized) {
    logout("The device refused this token.");
  } else {
    console.error(err);
  }
}

function logout(message) {
  localStorage.removeItem(TOKEN_KEY);
  state.token = null;
  if (state.events) state.events.close();
  clearInterval(state.refreshTimer);
  $("app").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  $("live").hidden = true; // nothing to be live about before a token is given
}

async function start() {
  const health = await fetch("health").then((r) => r.json());
  state.camera = health.camera_id;
  $("camera").textContent = health.camera_id;
  await loadBookings(); // also proves the token before the page is shown
  $("login").hidden = true;
  $("app").hidden = false;
  $("logout").hidden = false;
  connectEvents();
  clearInterval(state.refreshTimer);
  // Pids and ages move without an event: look again now and then.
  state.refreshTimer = setInterval(() => {
    loadDevice().catch(onError);
    if (state.outbox !== null) loadOutbox().catch(onError);
  }, 30000);
  await Promise.all([loadStatus(), loadVideos(), loadDevice(), loadOutbox()]);
}

document.addEventListener("DOMContentLoaded", () => {
  $("login").addEventListener("submit", (e) => {
    e.preventDefault();
    state.token = $("token").value.trim();
    localStorage.setItem(TOKEN_KEY, state.token);
    start().catch(onError);
  });
  $("logout").addEventListener("click", () => logout(""));
  $("snapshot").addEventListener("click", () => snapshotNow());
  $("logo-user").addEventListener("submit", (e) => {
    e.preventDefault();
    loadLogos($("logo-user-id").value.trim()).catch((err) => actionFailed("logos-result", err));
  });
  $("logo-form").addEventListener("submit", (e) => saveLogos(e));
  $("logo-reset").addEventListener("click", () => {
    for (const select of $("logo-rows").querySelectorAll("select[name=corner]")) {
      select.value = "";
      select.dispatchEvent(new Event("change"));
    }
  });
  if (state.token) start().catch(onError);
  else logout("");
});
