// EZREC dashboard: plain JS, no build step. Reads the API with the token the operator enters once
// (kept in localStorage) and follows the device live through /events (Server-Sent Events).
"use strict";

const TOKEN_KEY = "ezrec.token";
const STATUS_LABELS = {
  confirmed: "Confirmed",
  recording: "Recording",
  completed: "Recorded",
  video_processed: "Processed",
  video_uploaded: "Ready",
};
const $ = (id) => document.getElementById(id);

const state = {
  token: localStorage.getItem(TOKEN_KEY),
  camera: null,
  bookings: new Map(),
  recording: null,
  progress: new Map(),
  failures: new Map(),
  services: {},
  events: null,
  reloadTimer: null,
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
  state.bookings = new Map((list || []).map((b) => [b.id, b]));
  renderBookings();
}

async function refreshBooking(id) {
  const booking = await json(`bookings/${encodeURIComponent(id)}`);
  if (booking && isToday(booking)) state.bookings.set(booking.id, booking);
  else state.bookings.delete(id);
  renderBookings();
}

function scheduleReload() {
  clearTimeout(state.reloadTimer);
  state.reloadTimer = setTimeout(() => loadBookings().catch(onError), 200);
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
    cell(row, b.id);
    cell(row, b.user_id);
    const live = state.recording === b.id && b.status === "confirmed" ? "recording" : b.status;
    const td = row.insertCell();
    const badge = document.createElement("span");
    badge.className = `status status-${live}`;
    badge.dataset.status = live;
    badge.textContent = STATUS_LABELS[live] || live;
    td.append(badge);
    const note = state.failures.get(b.id) || (state.progress.has(b.id) ? `processing ${state.progress.get(b.id)}%` : "");
    if (note) {
      const span = document.createElement("span");
      span.className = "note";
      span.textContent = note;
      td.append(span);
    }
  }
  $("no-bookings").hidden = list.length > 0;
}

// ---- device health --------------------------------------------------------------------------------

const fmt = (value, unit, digits = 0) => (value === null || value === undefined ? "–" : `${Number(value).toFixed(digits)}${unit}`);

function duration(seconds) {
  const h = Math.floor(seconds / 3600);
  return h >= 24 ? `${Math.floor(h / 24)} d ${h % 24} h` : `${h} h ${Math.floor((seconds % 3600) / 60)} min`;
}

function renderHealth(snapshot) {
  $("health-empty").hidden = true;
  const rows = [
    ["CPU", fmt(snapshot.cpu_percent, " %")],
    ["Load", fmt(snapshot.load_1m, "", 2)],
    ["Memory", fmt(snapshot.memory_percent, " %")],
    ["Disk free", `${fmt(snapshot.disk_free_gb, " GB", 1)} of ${fmt(snapshot.disk_total_gb, " GB", 0)}`],
    ["Temperature", fmt(snapshot.cpu_temperature_c, " °C", 1)],
    ["Uptime", duration(snapshot.uptime_s || 0)],
    ["Recording", snapshot.recording_now || "nothing"],
    ["Reported", new Date(snapshot.collected_at).toLocaleTimeString()],
  ];
  if (snapshot.alerts_active && snapshot.alerts_active.length) rows.push(["Alerts", snapshot.alerts_active.join(", ")]);
  const list = $("health-list");
  list.replaceChildren();
  for (const [name, value] of rows) {
    const dt = document.createElement("dt");
    dt.textContent = name;
    const dd = document.createElement("dd");
    dd.textContent = value;
    list.append(dt, dd);
  }
  Object.assign(state.services, snapshot.services || {});
  renderServices();
}

function renderServices() {
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
  if (row) renderHealth(row.snapshot);
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
    card.append(img, label);
    card.addEventListener("click", () => play(v));
    grid.append(card);
  }
  $("no-videos").hidden = videos.length > 0;
}

function play(video) {
  $("player-box").hidden = false;
  $("player-title").textContent = `${video.booking_id} (${video.user_id})`;
  const player = $("player");
  player.src = withToken(`videos/${encodeURIComponent(video.id)}/download?inline=true`);
  player.play().catch(() => {});
}

// ---- live events ----------------------------------------------------------------------------------

function setLive(on) {
  const pill = $("live");
  pill.textContent = on ? "live" : "reconnecting";
  pill.className = `pill ${on ? "pill-on" : "pill-off"}`;
}

function onEvent({ topic, payload }) {
  const parts = topic.split("/");
  if (parts[1] === "media") return;
  if (state.camera && parts[1] !== state.camera) return;
  const kind = parts.slice(2).join("/");
  const id = payload && typeof payload === "object" ? payload.booking_id : undefined;
  switch (kind) {
    case "bookings":
      scheduleReload();
      break;
    case "recording/started":
      state.recording = id;
      refreshBooking(id).catch(onError);
      break;
    case "recording/finished":
      if (state.recording === id) state.recording = null;
      refreshBooking(id).catch(onError);
      break;
    case "video/progress":
      state.progress.set(id, Math.round(payload.percent));
      renderBookings();
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
    case "video/failed":
      state.failures.set(id, `${payload.element} failed${payload.final ? "" : ", retrying"}`);
      refreshBooking(id).catch(onError);
      break;
    case "status":
      renderHealth(payload);
      break;
    default:
      if (parts.length === 4 && parts[3] === "availability" && typeof payload === "string") {
        state.services[parts[2]] = payload;
        renderServices();
      }
  }
}

function connectEvents() {
  if (state.events) state.events.close();
  const events = new EventSource(withToken("events"));
  state.events = events;
  events.onopen = () => setLive(true);
  events.onmessage = (e) => onEvent(JSON.parse(e.data));
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
  $("app").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  setLive(false);
  $("live").textContent = "offline";
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
  await Promise.all([loadStatus(), loadVideos()]);
}

document.addEventListener("DOMContentLoaded", () => {
  $("login").addEventListener("submit", (e) => {
    e.preventDefault();
    state.token = $("token").value.trim();
    localStorage.setItem(TOKEN_KEY, state.token);
    start().catch(onError);
  });
  $("logout").addEventListener("click", () => logout(""));
  if (state.token) start().catch(onError);
  else logout("");
});
