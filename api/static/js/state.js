// What the page remembers between actions: the API key, the query shown, the open detail.

export const PAGE = pageSize(); // results per page: 24, or ?k=N in the page's address (1 to 100)
export const MAX_RESULTS = 1000; // the server's limit on offset + k
const KEY_STORAGE = "moair.apiKey";

export const state = {
  apiKey: readStoredKey(),
  query: null, // {kind: "text", text} | {kind: "image", file, name, text} | {kind: "similar", id, name}
  offset: 0, // offset of the last page shown
  k: PAGE, // size of the last page asked for
  generation: 0, // bumped for each new result list; late answers to older ones are dropped
  busy: 0,
  queryImage: null, // {file, name, url}
  detailId: null,
  detailRecord: null,
  retry: null, // what to run again once an API key is given
};

function pageSize() {
  const asked = parseInt(new URLSearchParams(window.location.search).get("k"), 10);
  return Number.isFinite(asked) ? Math.min(100, Math.max(1, asked)) : 24;
}

function readStoredKey() {
  try {
    return localStorage.getItem(KEY_STORAGE) || "";
  } catch {
    return "";
  }
}

export function storeKey(key) {
  state.apiKey = key;
  try {
    if (key) localStorage.setItem(KEY_STORAGE, key);
    else localStorage.removeItem(KEY_STORAGE);
  } catch {
    /* private mode: keep the key for this page only */
  }
}
