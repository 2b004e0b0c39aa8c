// The detail view of one item: its picture with the boxes the experts found, what they saw, the
// verbalizations, its files; "more like this" and delete.

import { api } from "./api.js";
import { $, basename, el, langOf, percent, plural } from "./dom.js";
import { showError, showNotice } from "./messages.js";
import { state } from "./state.js";
import { forgetThumbnails, showThumbnail } from "./thumbs.js";

function section(title, ...content) {
  return el("section", { class: "facts" }, el("h3", {}, title), ...content);
}

function scoreBar(score) {
  return el(
    "span",
    { class: "bar", title: score.toFixed(3) },
    el("span", { class: "bar-fill", style: `width:${Math.round(Math.max(0, Math.min(1, score)) * 100)}%` }),
  );
}

function cssColor(name) {
  const guess = String(name).toLowerCase().replace(/\s+/g, "");
  return window.CSS && CSS.supports("color", guess) ? guess : "#999";
}

function renderDetail(record) {
  const p = record.perception;
  const v = record.verbalization;
  const name = basename(record.paths[0] || `item ${record.item_id}`);
  $("#detail-title").textContent = name;
  $("#detail").dataset.itemId = record.item_id;

  const img = $("#detail-img");
  img.alt = v.retrieval ? `${name}: ${v.retrieval}` : name;
  img.removeAttribute("src");
  showThumbnail(img, record.item_id, 512);

  // boxes are fractions of the image: [x0, y0, x1, y1]
  const box = (kind, [x0, y0, x1, y1], label, title) =>
    el(
      "div",
      {
        class: `box ${kind}`,
        title,
        style: `left:${x0 * 100}%;top:${y0 * 100}%;width:${(x1 - x0) * 100}%;height:${(y1 - y0) * 100}%`,
      },
      label && el("span", {}, label),
    );
  $("#detail-boxes").replaceChildren(
    ...p.detections.map((d) => box("object-box", d.box, `${d.label} ${percent(d.score)}`)),
    ...p.text.map((line) => box("text-box", line.box, "", line.text)),
  );
  $("#boxes-toggle").hidden = !(p.detections.length || p.text.length);

  const info = [];
  const words = [];
  if (v.retrieval) words.push(el("dt", {}, "Description"), el("dd", { class: "verbalization retrieval", lang: "en" }, v.retrieval));
  if (v.retrieval_ko) words.push(el("dt", {}, "Korean"), el("dd", { class: "verbalization retrieval-ko", lang: "ko" }, v.retrieval_ko));
  if (v.given_text) words.push(el("dt", {}, "Given text"), el("dd", { lang: langOf(v.given_text) }, v.given_text));
  words.push(el("dt", {}, "MoAI prompt"), el("dd", { class: "verbalization moai", lang: "en" }, v.moai.trim() || "—"));
  info.push(section("In words", el("dl", { class: "words" }, words)));

  if (p.detections.length) {
    info.push(
      section(
        "Objects",
        el(
          "ul",
          { class: "scored detections" },
          p.detections.map((d) =>
            el("li", { dataset: { label: d.label } }, el("span", { class: "label" }, d.label), scoreBar(d.score), el("span", { class: "num" }, d.score.toFixed(2))),
          ),
        ),
      ),
    );
  }
  if (p.segments.length) {
    info.push(
      section(
        "Segments",
        el("ul", { class: "scored segments" }, p.segments.map((d) => el("li", {}, el("span", { class: "label" }, d.label), scoreBar(d.score), el("span", { class: "num" }, d.score.toFixed(2))))),
      ),
    );
  }
  if (p.tags.length) {
    info.push(
      section(
        "Looks like",
        el("ul", { class: "scored tags" }, p.tags.map((t) => el("li", {}, el("span", { class: "label" }, t.label), scoreBar(t.score), el("span", { class: "num" }, t.score.toFixed(2))))),
      ),
    );
  }
  if (p.text.length || p.text_present) {
    info.push(
      section(
        "Text in the image",
        p.text.length
          ? el("ol", { class: "ocr" }, p.text.map((line) => el("li", { lang: langOf(line.text), title: `confidence ${line.score.toFixed(2)}` }, line.text)))
          : el("p", { class: "muted" }, "Text is present but could not be read."),
      ),
    );
  }
  if (p.colors.length) {
    info.push(
      section(
        "Colours",
        el(
          "ul",
          { class: "colors" },
          p.colors.map((c) => el("li", {}, el("span", { class: "swatch", style: `background:${cssColor(c.name)}` }), `${c.name} ${percent(c.fraction)}`)),
        ),
      ),
    );
  }
  if (p.relations.length) {
    info.push(
      section(
        "Relations",
        el("ul", { class: "relations" }, p.relations.map((r) => el("li", {}, el("b", {}, r.subject), ` ${r.predicate} `, el("b", {}, r.object)))),
      ),
    );
  }
  info.push(
    section(
      "File",
      el(
        "dl",
        { class: "file" },
        el("dt", {}, record.paths.length > 1 ? `Paths (${record.paths.length})` : "Path"),
        el("dd", {}, el("ul", { class: "paths" }, record.paths.map((path) => el("li", {}, el("code", {}, path))))),
        el("dt", {}, "Modality"),
        el("dd", { class: "modality" }, record.modality),
        el("dt", {}, "Size"),
        el("dd", {}, p.width && p.height ? `${p.width} × ${p.height} px` : "—"),
        el("dt", {}, "Item"),
        el("dd", {}, `#${record.item_id}`),
        el("dt", {}, "Content hash"),
        el("dd", {}, el("code", {}, record.content_hash)),
      ),
      el(
        "details",
        { class: "versions" },
        el("summary", {}, "Expert versions"),
        el("dl", {}, Object.entries(record.expert_versions).map(([k, value]) => [el("dt", {}, k), el("dd", {}, el("code", {}, value))])),
      ),
    ),
  );
  $("#detail-info").replaceChildren(...info);
  $("#detail-info").scrollTop = 0;
}

export async function openDetail(id) {
  const dialog = $("#detail");
  state.detailId = id;
  state.detailRecord = null;
  $("#delete-confirm").hidden = true;
  $("#detail-title").textContent = "Loading…";
  $("#detail-info").replaceChildren(el("p", { class: "muted" }, el("span", { class: "spinner" }), "Loading…"));
  $("#detail-boxes").replaceChildren();
  $("#detail-img").removeAttribute("src");
  dialog.dataset.itemId = id;
  dialog.dataset.state = "loading";
  if (!dialog.open) dialog.showModal();
  try {
    const record = await api(`/items/${id}`);
    if (state.detailId !== id) return;
    state.detailRecord = record;
    renderDetail(record);
    dialog.dataset.state = "ready";
  } catch (error) {
    if (state.detailId !== id) return;
    if (error.status === 401) state.retry = () => openDetail(id);
    dialog.close();
    showError(error);
  }
}

export async function deleteDetailItem() {
  const id = state.detailId;
  const record = state.detailRecord;
  if (id === null) return;
  $("#delete-yes").disabled = true;
  try {
    const answer = await api(`/items/${id}`, { method: "DELETE" });
    $("#detail").close();
    forgetThumbnails(id);
    for (const card of document.querySelectorAll(`#results .result[data-item-id="${id}"]`)) card.remove();
    const name = record ? basename(record.paths[0]) : `item ${id}`;
    showNotice(`Removed ${name} from the index. ${plural(answer.items, "photo")} left.`);
    $("#stats").textContent = `${plural(answer.items, "photo")} indexed`;
  } catch (error) {
    showError(error);
  } finally {
    $("#delete-yes").disabled = false;
    $("#delete-confirm").hidden = true;
  }
}
