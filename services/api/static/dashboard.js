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
    case "video/failed":
      // A ready video has nothing left to fail: a late or forged failure is not shown.
      if (!booking || booking.status === "video_uploaded") break;
      state.failures.set(id, `${String(payload.element)} failed${payload.final ? "" : ", retrying"}`);
      refreshBooking(id).catch(onError);
      break;
    case "status":
      onStatus(payload);
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
