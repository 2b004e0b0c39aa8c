// Messages, the loading indicator, the index's size in the top bar, the API key form.

import { api } from "./api.js";
import { $, plural } from "./dom.js";
import { state } from "./state.js";

export function showError(error) {
  if (error && error.name === "AbortError") return;
  $("#error-text").textContent = error instanceof Error ? error.message : String(error);
  $("#error").hidden = false;
}

export function hideError() {
  $("#error").hidden = true;
}

export function showNotice(text) {
  $("#notice-text").textContent = text;
  $("#notice").hidden = false;
}

export function setLoading(on) {
  state.busy = Math.max(0, state.busy + (on ? 1 : -1));
  const busy = state.busy > 0;
  $("#loading").hidden = !busy;
  $("#results").setAttribute("aria-busy", String(busy));
  $("#load-more").disabled = busy;
}

export async function refreshStats() {
  try {
    const stats = await api("/stats");
    $("#stats").textContent = `${plural(stats.items, "photo")} indexed`;
    $("#stats").title = `${stats.index_type} index, ${stats.text_embedder} text embedder`;
  } catch (error) {
    if (error.status !== 401) $("#stats").textContent = "";
    if (error.status && error.status !== 401) showError(error);
  }
}

export function askForKey() {
  const form = $("#api-key-form");
  if (form.hidden) {
    form.hidden = false;
    $("#api-key").value = "";
    $("#api-key").focus();
  }
}
