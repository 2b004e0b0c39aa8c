// The moair web page: plain JavaScript modules, no framework, no build step, no external
// requests. This module wires the page's controls to the parts: search.js (queries and the
// result grid), detail.js (one item), upload.js (adding photos), thumbs.js, messages.js, and
// api.js (every call to the server).

import { deleteDetailItem } from "./detail.js";
import { $, basename } from "./dom.js";
import { hideError, refreshStats } from "./messages.js";
import { clearQueryImage, runQuery, searchFromBox, setQueryImage, setUpDropping } from "./search.js";
import { state, storeKey } from "./state.js";
import { forgetThumbnails } from "./thumbs.js";
import { upload } from "./upload.js";

function init() {
  $("#search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    searchFromBox();
  });
  $("#image-input").addEventListener("change", (event) => {
    const file = event.target.files[0];
    event.target.value = "";
    setQueryImage(file);
  });
  $("#query-chip-clear").addEventListener("click", () => clearQueryImage());
  $("#load-more").addEventListener("click", () => state.query && runQuery(state.query, true));
  for (const button of document.querySelectorAll(".example")) {
    button.addEventListener("click", () => {
      $("#search-input").value = button.dataset.query;
      searchFromBox();
    });
  }
  $("#error-close").addEventListener("click", hideError);
  $("#notice-close").addEventListener("click", () => ($("#notice").hidden = true));

  $("#upload-input").addEventListener("change", (event) => {
    const files = [...event.target.files];
    event.target.value = "";
    upload(files);
  });
  $("#upload-button").addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      $("#upload-input").click();
    }
  });
  $("#image-button").addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      $("#image-input").click();
    }
  });

  const dialog = $("#detail");
  $("#detail-close").addEventListener("click", () => dialog.close());
  dialog.addEventListener("click", (event) => {
    if (event.target === dialog) dialog.close(); // a click on the backdrop
  });
  dialog.addEventListener("close", () => {
    state.detailId = null;
    $("#delete-confirm").hidden = true;
  });
  $("#show-boxes").addEventListener("change", (event) => ($("#detail-boxes").hidden = !event.target.checked));
  $("#detail-similar").addEventListener("click", () => {
    const record = state.detailRecord;
    if (!record) return;
    dialog.close();
    runQuery({ kind: "similar", id: record.item_id, name: basename(record.paths[0]) });
  });
  $("#detail-delete").addEventListener("click", () => {
    $("#delete-confirm").hidden = false;
    $("#delete-no").focus();
  });
  $("#delete-no").addEventListener("click", () => ($("#delete-confirm").hidden = true));
  $("#delete-yes").addEventListener("click", deleteDetailItem);

  $("#api-key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    storeKey($("#api-key").value.trim());
    $("#api-key-form").hidden = true;
    hideError();
    forgetThumbnails();
    refreshStats();
    const retry = state.retry;
    state.retry = null;
    if (retry) retry();
    else if (state.query) runQuery(state.query);
  });

  document.addEventListener("keydown", (event) => {
    const typing = /^(INPUT|TEXTAREA|SELECT)$/.test(document.activeElement && document.activeElement.tagName);
    if (event.key === "/" && !typing && !dialog.open) {
      event.preventDefault();
      $("#search-input").focus();
    }
  });

  setUpDropping();
  refreshStats();
  $("#search-input").focus();
}

document.addEventListener("DOMContentLoaded", init);
