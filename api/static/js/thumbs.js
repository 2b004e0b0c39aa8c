// Thumbnails: fetched with the key and shown as blob URLs, a few at a time, cached.

import { api } from "./api.js";

const THUMB_CONCURRENCY = 6;
const THUMB_CACHE = 400;

const thumbCache = new Map(); // "id:size" -> Promise<blob URL>
const thumbQueue = [];
let thumbsActive = 0;

function thumbnailUrl(id, size) {
  const key = `${id}:${size}`;
  if (thumbCache.has(key)) {
    const cached = thumbCache.get(key);
    thumbCache.delete(key); // most recently used goes last
    thumbCache.set(key, cached);
    return cached;
  }
  const promise = new Promise((resolve, reject) => {
    thumbQueue.push({ id, size, resolve, reject });
    pumpThumbs();
  });
  promise.catch(() => thumbCache.delete(key)); // a failure is not cached
  thumbCache.set(key, promise);
  while (thumbCache.size > THUMB_CACHE) {
    const [oldKey, oldPromise] = thumbCache.entries().next().value;
    thumbCache.delete(oldKey);
    oldPromise.then((url) => setTimeout(() => URL.revokeObjectURL(url), 60000), () => {});
  }
  return promise;
}

function pumpThumbs() {
  while (thumbsActive < THUMB_CONCURRENCY && thumbQueue.length) {
    const task = thumbQueue.shift();
    thumbsActive += 1;
    api(`/items/${task.id}/thumbnail?size=${task.size}`, { raw: true })
      .then((response) => response.blob())
      .then((blob) => task.resolve(URL.createObjectURL(blob)), task.reject)
      .finally(() => {
        thumbsActive -= 1;
        pumpThumbs();
      });
  }
}

export function forgetThumbnails(id) {
  for (const key of [...thumbCache.keys()]) {
    if (id === undefined || key.startsWith(`${id}:`)) thumbCache.delete(key);
  }
}

export function showThumbnail(img, id, size) {
  const holder = img.parentElement;
  holder.classList.add("loading-thumb");
  holder.classList.remove("broken");
  img.dataset.itemId = id;
  thumbnailUrl(id, size).then(
    (url) => {
      if (img.dataset.itemId !== String(id)) return; // reused for another item meanwhile
      img.addEventListener("load", () => holder.classList.remove("loading-thumb"), { once: true });
      img.src = url;
    },
    (error) => {
      holder.classList.remove("loading-thumb");
      holder.classList.add("broken");
      holder.dataset.problem = error.status === 404 ? "No preview" : "Preview failed";
      img.title = error.message;
    },
  );
}
