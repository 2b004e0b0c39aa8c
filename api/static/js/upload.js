// Adding photos: POST /items, then poll the job until its photos are indexed.

import { api } from "./api.js";
import { openDetail } from "./detail.js";
import { $, el, plural } from "./dom.js";
import { refreshStats } from "./messages.js";
import { imageFiles } from "./search.js";
import { forgetThumbnails, showThumbnail } from "./thumbs.js";

const POLL_MS = 500;

function jobSummary(job) {
  if (job.state === "failed") return `Adding photos failed${job.error ? `: ${job.error}` : "."}`;
  const parts = [];
  parts.push(job.added ? `Added ${plural(job.added, "photo")}` : "No new photos added");
  if (job.linked) parts.push(`${plural(job.linked, "photo")} already indexed`);
  if (job.unchanged) parts.push(`${plural(job.unchanged, "photo")} uploaded before`);
  let text = parts.join(", ");
  if (job.rejected.length) {
    const why = job.rejected.map((r) => `${r.name} — ${r.reason}`).join("; ");
    text += ` (${job.rejected.length} rejected: ${why})`;
  }
  return text;
}

function renderJob(box, job) {
  box.dataset.state = job.state;
  box.dataset.jobId = job.id;
  const progress = $("progress", box);
  const total = Math.max(job.total, 0);
  if (job.state === "done" || job.state === "failed") {
    progress.hidden = true;
    $(".job-count", box).textContent = "";
    $(".job-text", box).textContent = jobSummary(job);
    box.classList.toggle("failed", job.state === "failed" || (job.total > 0 && !job.added && !job.linked && !job.unchanged));
    const items = $(".job-items", box);
    items.replaceChildren();
    for (const id of job.item_ids) {
      const img = el("img", { alt: "" });
      const button = el(
        "button",
        { type: "button", class: "job-item", dataset: { itemId: id }, title: `Open item #${id}`, onclick: () => openDetail(id) },
        el("span", { class: "job-thumb" }, img),
        el("span", {}, `Open #${id}`),
      );
      items.append(button);
      showThumbnail(img, id, 128);
    }
  } else {
    progress.hidden = false;
    if (total > 0) {
      progress.max = total;
      progress.value = job.done;
    } else {
      progress.removeAttribute("value");
    }
    $(".job-text", box).textContent = job.state === "queued" ? "Waiting to index…" : "Indexing…";
    $(".job-count", box).textContent = total ? `${job.done} / ${total}` : "";
  }
}

async function pollJob(box, job) {
  let failures = 0;
  while (box.isConnected) {
    renderJob(box, job);
    if (job.state === "done" || job.state === "failed") break;
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    try {
      job = await api(`/jobs/${encodeURIComponent(job.id)}`);
      failures = 0;
    } catch (error) {
      failures += 1;
      if (error.status === 404 || failures >= 10) {
        box.dataset.state = "failed";
        box.classList.add("failed");
        $("progress", box).hidden = true;
        $(".job-text", box).textContent = `Lost track of the upload: ${error.message}`;
        return;
      }
    }
  }
  if (job.state === "done") {
    refreshStats();
    if (job.added) forgetThumbnails(); // item ids may have been reused after deletions
  }
}

export async function upload(files) {
  files = imageFiles(files);
  if (!files.length) return;
  const box = el(
    "div",
    { class: "job", dataset: { state: "uploading" } },
    el("div", { class: "job-line" }, el("span", { class: "job-text" }, `Uploading ${plural(files.length, "photo")}…`), el("span", { class: "job-count" }), el("button", { type: "button", class: "chip-clear", "aria-label": "Dismiss", title: "Dismiss", onclick: () => box.remove() }, "×")),
    el("progress", { "aria-label": "Indexing progress" }),
    el("div", { class: "job-items" }),
  );
  $("#job-status").prepend(box);
  const form = new FormData();
  for (const file of files) form.append("images", file, file.name);
  try {
    const job = await api("/items", { method: "POST", form });
    await pollJob(box, job);
  } catch (error) {
    box.dataset.state = "failed";
    box.classList.add("failed");
    $("progress", box).hidden = true;
    $(".job-text", box).textContent = `Upload failed: ${error.message}`;
  }
}
