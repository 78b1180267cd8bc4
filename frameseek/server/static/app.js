// The search page: take an image (drop, paste or file picker), POST it to api/search, show the
// matches, and play the chosen one from its moment. No framework, no build step.

const TOP = 24;

const $ = (selector) => document.querySelector(selector);
const drop = $("#drop");
const preview = $("#preview");
const statusLine = $("#status");
const summary = $("#summary");
const results = $("#results");
const videoCards = $("#videos");
const player = $("#player");
const playerPanel = $("#player-panel");
const workspace = $("#workspace");
const nowPlaying = $("#now-playing");
const template = $("#result-template");
const signIn = $("#sign-in");
const tokenInput = $("#token-input");
const signInStatus = $("#sign-in-status");

// The access token, asked for once and kept for this tab only (sessionStorage), sent as a bearer
// header on API calls. Media links in answers carry their own short-lived signature instead.
const TOKEN_KEY = "frameseek-token";
let tokenWanted = null; // while the form is shown: resolves when a token is given
let tokenGiven = null;

let inFlight = null; // the AbortController of the running search, if any
let previewUrl = null;

// mm:ss.s (h:mm:ss.s past an hour), as `frameseek search` prints it.
function formatTime(seconds) {
  const total = Math.max(seconds, 0);
  const minutes = Math.floor(total / 60);
  const secs = tenths(total % 60).padStart(4, "0");
  const hours = Math.floor(minutes / 60);
  const mm = String(minutes % 60).padStart(2, "0");
  return hours ? `${hours}:${mm}:${secs}` : `${mm}:${secs}`;
}

// Python's format(x, ".1f"): toFixed(1), except that a value exactly halfway between two tenths
// goes to the even one (34.25 → "34.2") where toFixed goes up. toFixed(20) shows whether the
// double is exactly such a tie.
function tenths(x) {
  const exact = x.toFixed(20);
  if (!/^50*$/.test(exact.slice(exact.indexOf(".") + 2))) return x.toFixed(1);
  const down = Math.floor(x * 10);
  return ((down % 2 === 0 ? down : down + 1) / 10).toFixed(1);
}

function baseName(path) {
  return path.split(/[\\/]/).pop();
}

function setStatus(text, isError = false) {
  statusLine.textContent = text;
  statusLine.classList.toggle("error", isError);
}

// FastAPI answers {"detail": "message"} or, for validation errors, {"detail": [{msg, loc}]}.
async function errorMessage(response) {
  try {
    const { detail } = await response.json();
    if (typeof detail === "string") return detail;
    if (Array.isArray(detail)) return detail.map((d) => `${d.loc.join(".")}: ${d.msg}`).join("; ");
  } catch {
    // not JSON: fall through to the status line
  }
  return `${response.status} ${response.statusText}`;
}

// fetch() with the token; a 401 means the token is missing or revoked: ask for one, then retry.
async function api(path, options = {}) {
  for (;;) {
    const token = sessionStorage.getItem(TOKEN_KEY);
    const headers = token ? { Authorization: `Bearer ${token}` } : {};
    const response = await fetch(path, { ...options, headers });
    if (response.status !== 401) return response;
    if (token) {
      sessionStorage.removeItem(TOKEN_KEY);
      signInStatus.textContent = await errorMessage(response);
    }
    await askForToken();
  }
}

// One form for all the calls that wait for a token: each retries once it is given.
function askForToken() {
  if (!tokenWanted) {
    tokenWanted = new Promise((resolve) => { tokenGiven = resolve; });
    signIn.hidden = false;
    tokenInput.focus();
  }
  return tokenWanted;
}

signIn.addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, tokenInput.value.trim());
  tokenInput.value = "";
  signInStatus.textContent = "";
  signIn.hidden = true;
  tokenWanted = null;
  tokenGiven();
});

async function search(file) {
  if (!file) return;
  inFlight?.abort();
  const controller = new AbortController();
  inFlight = controller;

  if (previewUrl) URL.revokeObjectURL(previewUrl);
  previewUrl = URL.createObjectURL(file);
  preview.src = previewUrl;
  preview.hidden = false;
  drop.classList.add("has-image", "busy");
  setStatus(`Searching with ${file.name || "pasted image"}…`);

  const isClip = file.type.startsWith("video/");
  const body = new FormData();
  body.append(isClip ? "clip" : "image", file, file.name || "pasted-image.png");
  try {
    const response = await api(isClip ? "api/search/clip" : `api/search?top=${TOP}`, {
      method: "POST", body, signal: controller.signal,
    });
    if (!response.ok) {
      setStatus(await errorMessage(response), true);
      return;
    }
    const answer = await response.json();
    setStatus(file.name || "pasted image");
    if (isClip) renderClip(answer);
    else render(answer);
  } catch (error) {
    if (error.name !== "AbortError") setStatus(`Could not reach the server (${error.message})`, true);
  } finally {
    if (inFlight === controller) {
      inFlight = null;
      drop.classList.remove("busy");
    }
  }
}

// The server's own measure of each stage; "embed" includes waiting to share a CNN forward.
function stageBreakdown(stagesMs) {
  const stages = document.createElement("span");
  stages.id = "stages";
  stages.textContent = ` (${Object.entries(stagesMs)
    .map(([stage, ms]) => `${stage} ${Math.round(ms)}`).join(" · ")} ms)`;
  return stages;
}

// One card per video: its name, how often and how long the picture is on screen, and a
// timeline with a mark at each moment (a segment, for a clip), each playing from there.
function videoCard(video, spans, label) {
  const card = document.createElement("li");
  card.className = "video-card";
  const name = document.createElement("p");
  name.className = "video-name";
  name.textContent = `${baseName(video.video)} · ${label}`;
  const line = document.createElement("div");
  line.className = "timeline";
  const length = Math.max(video.duration ?? 0, ...spans.map((s) => s.end), 1);
  for (const span of spans) {
    const mark = document.createElement("button");
    mark.type = "button";
    mark.className = "mark";
    mark.style.left = `${(100 * span.start) / length}%`;
    mark.style.width = `max(6px, ${(100 * (span.end - span.start)) / length}%)`;
    mark.title = `${formatTime(span.time)}`;
    mark.dataset.time = span.time;
    mark.addEventListener("click", () => play({ ...video, time: span.time }, mark));
    line.append(mark);
  }
  card.append(name, line);
  return card;
}

function render({
  results: matches, videos = [], took_ms: tookMs, stages_ms: stagesMs, match: found, similarity,
  threshold,
}) {
  results.replaceChildren();
  videoCards.replaceChildren(...videos.map((video) => videoCard(video, video.moments,
    `${video.appearances === 1 ? "1 appearance" : `${video.appearances} appearances`}, ` +
    `${video.seconds.toFixed(1)} s`)));
  const count = matches.length === 1 ? "1 result" : `${matches.length} results`;
  const took = document.createElement("strong");
  took.id = "took";
  took.textContent = `${Math.round(tookMs)} ms`;
  summary.replaceChildren(`${count} · query took `, took, stageBreakdown(stagesMs));
  if (!matches.length) summary.append(" · the index holds no videos yet");
  // found is null for an index without a calibrated threshold: no verdict to show.
  const noMatch = found === false && matches.length > 0;
  results.classList.toggle("nearest-only", noMatch);
  if (noMatch) {
    const verdict = document.createElement("p");
    verdict.id = "no-match";
    verdict.className = "no-match";
    verdict.textContent = `No match: this image is from none of the indexed videos (nearest ` +
      `similarity ${similarity.toFixed(2)}, below ${threshold.toFixed(2)}). The nearest key ` +
      `frames anyway:`;
    summary.append(verdict);
  }

  matches.forEach((match, rank) => {
    const item = template.content.cloneNode(true);
    const button = item.querySelector(".result");
    button.title = `${match.video}\nframe ${match.frame}, ${match.time.toFixed(2)} s`;
    button.dataset.time = match.time;
    item.querySelector("img").src = match.thumbnail_url;
    item.querySelector(".rank").textContent = rank + 1;
    item.querySelector(".name").textContent = baseName(match.video);
    item.querySelector(".time").textContent = formatTime(match.time);
    item.querySelector(".distance").textContent = `dist. ${match.distance.toFixed(2)}`;
    button.addEventListener("click", () => play(match, button));
    results.append(item);
  });
}

function renderClip({ segments, match: found, samples, duration, took_ms: tookMs }) {
  results.replaceChildren();
  const took = document.createElement("strong");
  took.id = "took";
  took.textContent = `${Math.round(tookMs)} ms`;
  const what = found === false || !segments.length ? "no match"
    : segments.length === 1 ? "1 segment" : `${segments.length} segments`;
  summary.replaceChildren(`A clip of ${duration.toFixed(1)} s (${samples} frames searched): ` +
    `${what} · query took `, took);
  videoCards.replaceChildren(...segments.map((segment) => videoCard(segment,
    [{ start: segment.start, end: segment.end, time: segment.start }],
    `${formatTime(segment.start)}–${formatTime(segment.end)} is the clip's ` +
    `${segment.query_start.toFixed(1)}–${segment.query_end.toFixed(1)} s`)));
}

function play(match, button) {
  for (const other of document.querySelectorAll(".selected")) other.classList.remove("selected");
  button.classList.add("selected");
  nowPlaying.textContent = `${baseName(match.video)} from ${formatTime(match.time)}`;
  playerPanel.hidden = false;
  workspace.classList.add("playing");
  if (!match.video_url) {
    nowPlaying.textContent += " (the video is no longer in the index)";
    return;
  }
  const seek = () => {
    player.currentTime = match.time;
    // Autoplay may be refused (no user gesture reached it); the player is then left paused there.
    player.play().catch(() => {});
  };
  if (player.getAttribute("src") !== match.video_url) {
    player.src = match.video_url;
    player.addEventListener("loadedmetadata", seek, { once: true });
  } else {
    seek();
  }
  playerPanel.scrollIntoView({ behavior: "smooth", block: "nearest" });
}

async function showStats() {
  try {
    const response = await api("api/stats");
    if (!response.ok) return;
    const stats = await response.json();
    const videos = stats.videos === 1 ? "1 video" : `${stats.videos} videos`;
    $("#stats").textContent =
      `${videos} · ${formatTime(stats.duration_s)} of video · ${stats.keyframes} key frames`;
  } catch {
    // The stats line is a courtesy: a search will report a server that is down.
  }
}

const searchable = (type) => type.startsWith("image/") || type.startsWith("video/");

function firstImage(items) {
  for (const item of items ?? []) {
    if (item.kind === "file" && searchable(item.type)) return item.getAsFile();
  }
  return null;
}

$("#file-input").addEventListener("change", (event) => {
  search(event.target.files[0]);
  event.target.value = ""; // choosing the same file again searches again
});

document.addEventListener("paste", (event) => {
  const file = firstImage(event.clipboardData?.items);
  if (file) {
    event.preventDefault();
    search(file);
  }
});

// Dropping anywhere on the page searches; the veil shows that the drop will be taken.
let dragDepth = 0;
window.addEventListener("dragenter", (event) => {
  event.preventDefault();
  dragDepth += 1;
  document.body.classList.add("dragging");
});
window.addEventListener("dragleave", () => {
  dragDepth = Math.max(0, dragDepth - 1);
  if (!dragDepth) document.body.classList.remove("dragging");
});
window.addEventListener("dragover", (event) => event.preventDefault());
window.addEventListener("drop", (event) => {
  event.preventDefault();
  dragDepth = 0;
  document.body.classList.remove("dragging");
  const file = firstImage(event.dataTransfer?.items) ??
    [...(event.dataTransfer?.files ?? [])].find((f) => searchable(f.type));
  if (file) search(file);
  else setStatus("That is neither an image nor a video file.", true);
});

showStats();
