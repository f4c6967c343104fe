// Live preview of a filter: how many nodes it selects, the first of them, or where it is wrong.
// Attaches to #filter and draws into #filter-preview (its data-url is the preview API). Each
// answer is also announced as a "filter-preview" event on #filter (the builder marks the row
// a syntax error points at); the builder asks for a preview through schedule().
//
// On the job form (#filter-preview has data-plan), it asks the job-plan API instead, with the
// chosen action and options: the count is then what the job would be sent to (the operator's
// scope, the collective and the limit applied), the number the confirmation page shows.
(function () {
  "use strict";
  const input = document.getElementById("filter");
  const box = document.getElementById("filter-preview");
  if (!input || !box) return;
  const url = box.dataset.url || "/api/inventory/preview/";
  const planMode = box.hasAttribute("data-plan");
  const form = input.form;
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
    if (planMode) parts.push(...planNotes(data));
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

  // What the plan applied to the filter, one note each, so the count is never a surprise.
  function planNotes(data) {
    const notes = [];
    if (data.scope) {
      const typed = data.typed === null || data.typed === undefined ? null : data.typed;
      notes.push("inside your scope " + data.scope +
        (typed !== null && typed !== data.matched ? " (your filter alone matches " + typed + ")" : ""));
    }
    if (data.collective && form && form.elements["option:collective"] && form.elements["option:collective"].value)
      notes.push("collective " + data.collective + " only");
    if (data.limit) notes.push("limit " + data.limit + ": " + data.count + " of " + data.matched + " chosen at random");
    if (data.stale) notes.push(data.stale + " stale node" + (data.stale === 1 ? "" : "s") + " left out");
    if (data.needs_approval) notes.push("needs a second person's approval");
    const parts = [];
    if (notes.length) {
      const list = el("ul", {class: "plan-notes", id: "filter-preview-plan"});
      notes.forEach((text) => list.appendChild(el("li", {text: text})));
      parts.push(list);
    }
    if (data.problem) parts.push(el("p", {class: "error", id: "filter-preview-problem", role: "alert", text: data.problem}));
    return parts;
  }

  function planParams(text) {
    const params = new URLSearchParams({filter: text});
    if (!form) return params;
    const action = form.elements["agent_action"];
    if (action) params.set("agent_action", action.value);
    for (const field of form.elements) {
      if (field.name && field.name.startsWith("option:") && field.value.trim() !== "") params.set(field.name, field.value);
    }
    return params;
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
    const params = planMode ? planParams(text) : new URLSearchParams({filter: text});
    const key = params.toString();
    if (key === lastText) return;
    lastText = key;
    if (controller) controller.abort();
    controller = new AbortController();
    const mine = controller;
    box.setAttribute("aria-busy", "true");
    try {
      const response = await fetch(url + "?" + params, {
        signal: mine.signal, credentials: "same-origin", headers: {Accept: "application/json"},
      });
      const data = await response.json().catch(() => null);
      if (mine !== controller) return;
      if (response.status === 200 && data) showCount(data);
      else if ((response.status === 400 || response.status === 403) && data && data.error) showError(text, data);
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
  if (planMode && form) {
    // The action and the options change the plan as much as the filter does.
    form.addEventListener("change", (event) => {
      const name = event.target.name || "";
      if (name === "agent_action" || name.startsWith("option:")) schedule(0);
    });
    form.addEventListener("input", (event) => {
      if ((event.target.name || "").startsWith("option:")) schedule();
    });
  }
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
