// Searching and the result grid: text, image or image + text, and "more like this"; the query
// image (picked, dropped or pasted).

import { api } from "./api.js";
import { openDetail } from "./detail.js";
import { $, basename, el, langOf, plural } from "./dom.js";
import { hideError, setLoading, showError } from "./messages.js";
import { MAX_RESULTS, PAGE, state } from "./state.js";
import { showThumbnail } from "./thumbs.js";

function describe(query) {
  if (query.kind === "text") return ["Results for ", el("q", { lang: langOf(query.text) }, query.text)];
  if (query.kind === "image") {
    const parts = ["Photos like ", el("span", { class: "strong" }, query.name)];
    if (query.text) parts.push(" and ", el("q", { lang: langOf(query.text) }, query.text));
    return parts;
  }
  return ["More like ", el("span", { class: "strong" }, query.name)];
}

function queryKey(query) {
  if (query.kind === "text") return `text:${query.text}`;
  if (query.kind === "image") return `image:${query.name}${query.text ? `+${query.text}` : ""}`;
  return `similar:${query.id}`;
}

export async function runQuery(query, append = false) {
  if (!append) state.generation += 1;
  const generation = state.generation;
  const limit = query.kind === "similar" ? MAX_RESULTS - 1 : MAX_RESULTS; // similar asks one extra
  const offset = append ? state.offset + state.k : 0;
  const k = Math.min(PAGE, limit - offset);
  if (k <= 0) return;
  hideError();
  setLoading(true);
  const results = $("#results");
  if (!append) results.dataset.state = "loading";
  try {
    let answer;
    if (query.kind === "text") {
      answer = await api("/search", { method: "POST", json: { text: query.text, k, offset } });
    } else if (query.kind === "image") {
      const form = new FormData();
      form.append("image", query.file, query.name);
      if (query.text) form.append("text", query.text);
      form.append("k", String(k));
      form.append("offset", String(offset));
      answer = await api("/search/image", { method: "POST", form });
    } else {
      answer = await api(`/items/${query.id}/similar?k=${k}&offset=${offset}`);
    }
    if (generation !== state.generation) return; // a newer search has started
    state.query = query;
    state.offset = offset;
    state.k = k;
    renderHits(query, answer.hits, append);
    results.dataset.query = queryKey(query); // what the grid shows, e.g. "text:a dog", "similar:12"
    results.dataset.state = "ready";
    $("#load-more").hidden = answer.hits.length < k || offset + k >= limit;
  } catch (error) {
    if (generation !== state.generation) return;
    if (error.status === 401) state.retry = () => runQuery(query, append);
    if (!append) results.dataset.state = "error";
    showError(error);
  } finally {
    setLoading(false);
  }
}

function renderHits(query, hits, append) {
  const results = $("#results");
  if (!append) {
    results.replaceChildren();
    window.scrollTo({ top: 0 });
  }
  $("#empty").hidden = true;
  const shown = results.children.length + hits.length;
  const title = $("#results-title");
  if (shown === 0) {
    title.replaceChildren(...describe(query), el("span", { class: "count" }, " · no photos found"));
  } else {
    title.replaceChildren(...describe(query), el("span", { class: "count" }, ` · ${plural(shown, "photo")}`));
  }
  const template = $("#result-template");
  for (const hit of hits) {
    const card = template.content.firstElementChild.cloneNode(true);
    const name = basename(hit.path);
    card.dataset.itemId = hit.item_id;
    card.dataset.path = hit.path;
    card.dataset.rank = hit.rank;
    const img = $("img", card);
    img.alt = hit.evidence.length ? `${name}: ${hit.evidence.join(", ")}` : name;
    showThumbnail(img, hit.item_id, 256);
    const open = $(".open", card);
    open.setAttribute("aria-label", `Details of ${name}`);
    open.addEventListener("click", () => openDetail(hit.item_id));
    $(".name", card).textContent = name;
    $(".name", card).title = hit.path;
    const score = $(".score", card);
    score.textContent = hit.score.toFixed(3);
    const parts = Object.entries(hit.contributions || {})
      .map(([part, value]) => `${part} ${value.toFixed(3)}`)
      .join(", ");
    score.title = `Rank ${hit.rank}, score ${hit.score.toFixed(4)}${parts ? ` (${parts})` : ""}`;
    const evidence = $(".evidence", card);
    for (const word of hit.evidence) evidence.append(el("li", { lang: langOf(word) }, word));
    const more = $(".more-like", card);
    more.setAttribute("aria-label", `More like ${name}`);
    more.addEventListener("click", () => runQuery({ kind: "similar", id: hit.item_id, name }));
    if (hit.other_paths && hit.other_paths.length) {
      const copies = $(".copies", card);
      copies.textContent = `+${plural(hit.other_paths.length, "copy", "copies")}`;
      copies.title = hit.other_paths.join("\n");
    }
    results.append(card);
  }
}

export function searchFromBox() {
  const text = $("#search-input").value.trim();
  if (state.queryImage) {
    runQuery({ kind: "image", file: state.queryImage.file, name: state.queryImage.name, text });
  } else if (text) {
    runQuery({ kind: "text", text });
  } else {
    $("#search-input").focus();
  }
}

// The query image: picked, dropped or pasted

export function setQueryImage(file) {
  if (!file) return;
  if (file.type && !file.type.startsWith("image/")) {
    showError(`${file.name || "That file"} is not an image.`);
    return;
  }
  clearQueryImage(false);
  const name = file.name || "pasted image";
  state.queryImage = { file, name, url: URL.createObjectURL(file) };
  $("#query-chip-img").src = state.queryImage.url;
  $("#query-chip-img").alt = `Query image ${name}`;
  $("#query-chip-name").textContent = name;
  $("#query-chip").hidden = false;
  $("#search-input").placeholder = "Add words to refine (optional)";
  searchFromBox();
}

export function clearQueryImage(searchAgain = true) {
  if (!state.queryImage) return;
  URL.revokeObjectURL(state.queryImage.url);
  state.queryImage = null;
  $("#query-chip").hidden = true;
  $("#query-chip-img").removeAttribute("src");
  $("#search-input").placeholder = "Search photos — English or 한국어";
  if (searchAgain && $("#search-input").value.trim()) searchFromBox();
  $("#search-input").focus();
}

export const imageFiles = (list) => [...(list || [])].filter((file) => !file.type || file.type.startsWith("image/"));

export function setUpDropping() {
  const zone = $("#drop-zone");
  let depth = 0;
  const hasFiles = (event) => event.dataTransfer && [...event.dataTransfer.types].includes("Files");
  window.addEventListener("dragenter", (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    depth += 1;
    zone.hidden = false;
  });
  window.addEventListener("dragover", (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
  });
  window.addEventListener("dragleave", (event) => {
    if (!hasFiles(event)) return;
    depth = Math.max(0, depth - 1);
    if (depth === 0) zone.hidden = true;
  });
  window.addEventListener("drop", (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    depth = 0;
    zone.hidden = true;
    const files = imageFiles(event.dataTransfer.files);
    if (!files.length) showError("Drop an image file (JPEG, PNG, …) to search with it.");
    else setQueryImage(files[0]);
  });
  document.addEventListener("paste", (event) => {
    const files = imageFiles(event.clipboardData && event.clipboardData.files);
    if (files.length) {
      event.preventDefault();
      setQueryImage(files[0]);
    }
  });
}
