// Every call to the server goes through api(), which adds the API key (if one was given) and
// turns the server's JSON errors ({"error": ...}) into readable messages.

import { askForKey } from "./messages.js";
import { state } from "./state.js";

export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

export async function api(path, { method = "GET", json, form, signal, raw = false } = {}) {
  const headers = {};
  if (state.apiKey) headers["X-API-Key"] = state.apiKey;
  let body;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (form) {
    body = form;
  }
  let response;
  try {
    response = await fetch(path, { method, headers, body, signal });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError("Cannot reach the server. Is moair serve still running?", 0);
  }
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`.trim();
    try {
      const answer = await response.json();
      if (answer && answer.error) message = answer.error;
    } catch {
      /* not JSON: keep the status line */
    }
    if (response.status === 401) {
      const hadKey = Boolean(state.apiKey);
      askForKey();
      message = hadKey ? "The API key was not accepted. Please enter it again." : "This server needs an API key.";
    }
    throw new ApiError(message, response.status);
  }
  return raw ? response : response.json();
}
