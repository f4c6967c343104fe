// Live preview of a filter: how many nodes it selects, the first of them, or where it is wrong.
// Attaches to #filter and draws into #filter-preview (its data-url is the preview API). Each
// answer is also announced as a "filter-preview" event on #filter (the builder marks the row
// a syntax error points at); the builder asks for a preview through schedule().
(function () {
  "use strict";
  const input = document.getElementById("filter");
  const box = document.getElementById("filter-preview");
  if (!input || !box) return;
  const url = box.dataset.url || "/api/inventory/preview/";
  // Typing pauses shorter than this send one request; with the answer the preview follows a
  // change within about 200 ms.
  const DEBOUNCE_MS = 120;
  const SHOWN = 5;
  let timer = null;
  let controller = null;
  let lastText = null;

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => {
      if (k === "text") node.textContent = v; else node.setAttribute(k, v);
    });
    (children || []).forEach((c) => node.appendChild(typeof c === "string" ? document.createTextNode(c) : c));
    return node;
  }

  function setState(state, text, data) {
    box.hidden = false;
    box.dataset.state = state;
    input.setAttribute("aria-invalid", state === "error" ? "true" : "false");
    input.dispatchEvent(new CustomEvent("filter-preview", {detail: {state, text, data}}));
  }

  function showCount(data) {
    setState(data.count ? "ok" : "empty", data.filter, data);
    const head = el("p", {class: "preview-count", id: "filter-preview-count"});
    if (data.count === 0) {
      head.appendChild(el("strong", {text: "0 matching nodes"}));
      head.appendChild(document.createTextNode(": this filter matches nothing, so a job would reach no node."));
    } else {
      head.appendChild(el("strong", {text: data.count + " matching node" + (data.count === 1 ? "" : "s")}));
      if (!data.filter.trim()) head.appendChild(document.createTextNode(" (no filter: every node)"));
    }
    const parts = [head];
    if (data.nodes.length) {
      const list = el("ul", {class: "preview-nodes"});
      data.nodes.slice(0, SHOWN).forEach((node) => {
        const facts = Object.entries(node.facts).map(([k, v]) =>
          k + "=" + (typeof v === "string" ? v : JSON.stringify(v))).join(" ");
        const item = el("li", {}, [el("code", {class: "preview-identity", text: node.identity})]);
        if (node.stale) item.appendChild(el("span", {class: "status status-stale", text: "stale"}));
        if (facts) item.appendChild(el("span", {class: "muted preview-facts", text: facts}));
        list.appendChild(item);
      });
      parts.push(list);
      if (data.count > SHOWN) parts.push(el("p", {class: "muted", text: "and " + (data.count - SHOWN) + " more"}));
    }
    box.replaceChildren(...parts);
  }

  function showError(text, data) {
    setState("error", text, data);
    const parts = [el("p", {class: "error", id: "filter-preview-error", role: "alert", text: data.error})];
    if (data.column) {
      // The filter, and under it a caret at the column (1-based), in a monospace block.
      const line = text.replace(/[\r\n\t]/g, " ");
      parts.push(el("pre", {class: "caret-line", "aria-hidden": "true"}, [
        el("code", {text: line}), "\n",
        el("code", {class: "caret", id: "filter-preview-caret", text: " ".repeat(data.column - 1) + "^"}),
      ]));
    }
    box.replaceChildren(...parts);
  }

  function showFailure(message) {
    setState("failed", null, null);
    box.replaceChildren(el("p", {class: "muted", text: message}));
  }

  async function run() {
    const text = input.value;
    if (text === lastText) return;
    lastText = text;
    if (controller) controller.abort();
    controller = new AbortController();
    const mine = controller;
    box.setAttribute("aria-busy", "true");
    try {
      const response = await fetch(url + "?" + new URLSearchParams({filter: text}), {
        signal: mine.signal, credentials: "same-origin", headers: {Accept: "application/json"},
      });
      const data = await response.json().catch(() => null);
      if (mine !== controller) return;
      if (response.status === 200 && data) showCount(data);
      else if (response.status === 400 && data && data.error) showError(text, data);
      else { lastText = null; showFailure("Preview unavailable (HTTP " + response.status + ")."); }
    } catch (err) {
      if (err.name === "AbortError") return;
      lastText = null;
      showFailure("Preview unavailable: " + err.message);
    } finally {
      if (mine === controller) box.removeAttribute("aria-busy");
    }
  }

  function schedule(delay) {
    clearTimeout(timer);
    timer = setTimeout(run, typeof delay === "number" ? delay : DEBOUNCE_MS);
  }

  input.addEventListener("input", () => schedule());
  // Enter in the preview would submit the form: keep that; Escape hides the preview.
  input.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !box.hidden) { box.hidden = true; event.preventDefault(); }
  });
  input.addEventListener("focus", () => { if (lastText !== null) box.hidden = false; });
  run();
  window.switchboardFilterPreview = {
    run: () => { lastText = null; return run(); },
    schedule: schedule,
  };
})();
