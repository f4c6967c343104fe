// The filter builder: conditions in rows (a fact, class, agent or identity), in groups that
// match all (and) or any (or) of their items and can be negated, kept in step with the
// compound expression in #filter. Builder mode writes the expression; text mode lets the
// operator type it, and going back to the builder parses it (as agents/filters/compound.py
// does, in filter_language.js) when it fits the rows, or says why not. Fact names and values
// come from the inventory's autocomplete API (combobox.js). Exposes
// window.switchboardFilterBuilder for the job form.
(function () {
  "use strict";
  const input = document.getElementById("filter");
  const host = document.getElementById("filter-builder");
  const modeSwitch = document.getElementById("filter-mode");
  const note = document.getElementById("filter-mode-note");
  const language = window.switchboardFilterLanguage;
  const combobox = window.switchboardCombobox;
  if (!input || !host || !modeSwitch || !note || !language || !combobox) return;
  const {parse, quoteValue, escapeSlashes, isRegexLiteral, TextError, FACT_NAME} = language;

  // The filter is valid but has no rows for it (too deeply nested, an empty value).
  class NoFit extends Error {}

  const factsUrl = host.dataset.factsUrl || "/api/inventory/facts/";
  const valuesUrl = host.dataset.valuesUrl || "/api/inventory/values/";
  // Root, group, group in group: deeper nesting is still fine as text.
  const MAX_GROUP_DEPTH = 3;
  const TYPING_DELAY_MS = 120;
  const SUGGESTIONS = 50;
  // Autocomplete answers are reused for this long (the server keeps its own for 30 s).
  const SUGGESTION_TTL_MS = 60000;
  const STORAGE_KEY = "switchboard.filterMode";

  // ---- The builder's tree: groups of rows ---------------------------------------------------
  let nextId = 1;
  const newRow = (fields) => Object.assign(
    {id: nextId++, type: "row", kind: "fact", name: "", op: "==", value: "", negated: false}, fields);
  const newGroup = (fields) => Object.assign(
    {id: nextId++, type: "group", match: "all", negated: false, items: []}, fields);

  function rowFromAst(ast, negated) {
    if (ast.value === "") {
      const what = ast.type === "fact" ? ast.fact : ast.kind;
      throw new NoFit("its condition on " + what + " has an empty value");
    }
    if (ast.type === "fact") return newRow({kind: "fact", name: ast.fact, op: ast.op, value: ast.value, negated});
    return newRow({kind: ast.kind, op: ast.regex ? "=~" : "==", value: ast.value, negated});
  }

  function itemFromAst(ast, depth) {
    if (ast.type === "fact" || ast.type === "name") return rowFromAst(ast, false);
    if (ast.type === "not" && (ast.item.type === "fact" || ast.item.type === "name")) {
      return rowFromAst(ast.item, true);
    }
    if (depth > MAX_GROUP_DEPTH) {
      throw new NoFit("it nests groups more than " + MAX_GROUP_DEPTH + " levels deep");
    }
    if (ast.type === "not") {
      const inner = ast.item;
      if (inner.type === "and" || inner.type === "or") {
        return newGroup({negated: true, match: inner.type === "or" ? "any" : "all",
          items: inner.items.map((item) => itemFromAst(item, depth + 1))});
      }
      return newGroup({negated: true, items: [itemFromAst(inner, depth + 1)]});
    }
    return newGroup({match: ast.type === "or" ? "any" : "all",
      items: ast.items.map((item) => itemFromAst(item, depth + 1))});
  }

  // The builder's tree for ``text``; throws TextError (syntax) or NoFit (valid, not rows).
  function treeFromText(text) {
    const ast = parse(text);
    if (ast === null) return newGroup({items: [newRow()]});
    if (ast.type === "and" || ast.type === "or") {
      return newGroup({match: ast.type === "or" ? "any" : "all",
        items: ast.items.map((item) => itemFromAst(item, 1))});
    }
    return newGroup({items: [itemFromAst(ast, 1)]});
  }

  const isRegexOp = (op) => op === "=~" || op === "!~";

  // A row's expression, or "" while it is incomplete (no fact name or no value yet).
  function rowText(row) {
    const name = row.name.trim();
    if (!row.value || (row.kind === "fact" && !name)) return "";
    let value = row.value;
    if (isRegexOp(row.op) && isRegexLiteral(value)) value = value.slice(1, -1);
    const shown = isRegexOp(row.op) ? "/" + escapeSlashes(value) + "/" : quoteValue(value);
    // "=" is how operators write equality (the parser reads it as "==").
    const op = row.op === "==" ? "=" : row.op;
    const body = row.kind === "fact" ? name + op + shown : row.kind + ":" + shown;
    return (row.negated ? "not " : "") + body;
  }

  // Pieces of text, each row's own piece marked with its id (to find a syntax error's row).
  function groupPieces(group, nested) {
    const parts = group.items
      .map((item) => item.type === "row"
        ? (rowText(item) ? [{row: item.id, text: rowText(item)}] : [])
        : groupPieces(item, true))
      .filter((pieces) => pieces.length);
    if (!parts.length) return [];
    let out = [];
    parts.forEach((pieces, i) => {
      if (i) out.push(group.match === "any" ? " or " : " and ");
      out = out.concat(pieces);
    });
    if (nested && parts.length > 1) out = ["(", ...out, ")"];
    if (group.negated) out = ["not ", ...out];
    return out;
  }

  // {text, spans}: the expression of a tree, and where each row's text is in it (0-based).
  function generate(tree) {
    let text = "";
    const spans = new Map();
    groupPieces(tree, false).forEach((piece) => {
      if (typeof piece === "string") { text += piece; return; }
      spans.set(piece.row, [text.length, text.length + piece.text.length]);
      text += piece.text;
    });
    return {text, spans};
  }

  // ---- State, and keeping #filter in step --------------------------------------------------
  const state = {mode: "text", tree: null, generated: null, spans: new Map()};

  function preview(delay) {
    if (window.switchboardFilterPreview) window.switchboardFilterPreview.schedule(delay);
  }

  // After every change in the builder: the expression into #filter, then a preview.
  function changed(delay) {
    const result = generate(state.tree);
    state.generated = result.text;
    state.spans = result.spans;
    if (input.value !== result.text) input.value = result.text;
    clearRowErrors();
    preview(delay);
  }

  function find(id, group, parent) {
    group = group || state.tree;
    if (group.id === id) return {item: group, parent: parent || null};
    for (const item of group.items) {
      if (item.id === id) return {item, parent: group};
      if (item.type === "group") {
        const found = find(id, item, group);
        if (found) return found;
      }
    }
    return null;
  }

  function showNote(message, kind) {
    note.hidden = !message;
    note.textContent = message || "";
    note.dataset.kind = kind || "info";
  }

  const textPlaceholder = input.placeholder;

  function reflectMode() {
    const builder = state.mode === "builder";
    host.hidden = !builder;
    input.classList.toggle("fb-derived", builder);
    input.placeholder = builder ? "every node (no complete condition yet)" : textPlaceholder;
    modeSwitch.querySelectorAll("[role=radio]").forEach((radio) => {
      const on = radio.dataset.mode === state.mode;
      radio.setAttribute("aria-checked", String(on));
      radio.tabIndex = on ? 0 : -1;
    });
  }

  // Into builder mode when #filter fits the rows; otherwise stay in text mode and say why.
  function toBuilder() {
    let tree;
    try {
      tree = treeFromText(input.value);
    } catch (err) {
      state.mode = "text";
      reflectMode();
      if (err instanceof TextError) {
        showNote("The builder cannot read this filter while it has a syntax error (shown below). " +
          "Fix it in the text, then switch to Builder.", "error");
      } else if (err instanceof NoFit) {
        showNote("This filter does not fit the builder: " + err.message + ". Keep editing it as text.",
          "warning");
      } else {
        throw err;
      }
      return false;
    }
    state.tree = tree;
    state.mode = "builder";
    // The text stays as typed until the rows change; then it is the rows' expression.
    state.generated = null;
    state.spans = new Map();
    showNote("");
    reflectMode();
    render();
    return true;
  }

  function toText(message) {
    state.mode = "text";
    reflectMode();
    showNote(message || "");
  }

  function chooseMode(mode, focus) {
    try { window.localStorage.setItem(STORAGE_KEY, mode); } catch (err) { /* private mode */ }
    if (mode === state.mode) return;
    if (mode === "builder") {
      if (toBuilder() && focus) focusFirst();
      else if (focus) input.focus();
    } else {
      toText("");
      if (focus) input.focus();
    }
  }

  function focusFirst() {
    const first = host.querySelector("[data-focus]");
    if (first) first.focus();
  }

  // Typing in #filter while the builder shows: the text is now what counts. In text mode a
  // note about an earlier text (a syntax error, a filter that did not fit) is out of date.
  input.addEventListener("input", () => {
    if (state.mode === "builder") {
      toText("Editing the filter as text; Builder turns it back into rows when it fits.");
    } else if (note.dataset.kind !== "info") {
      showNote("");
    }
  });

  modeSwitch.addEventListener("click", (event) => {
    const radio = event.target.closest("[role=radio]");
    if (radio) chooseMode(radio.dataset.mode, true);
  });
  modeSwitch.addEventListener("keydown", (event) => {
    if (!["ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown"].includes(event.key)) return;
    event.preventDefault();
    const radios = Array.from(modeSwitch.querySelectorAll("[role=radio]"));
    const at = radios.indexOf(document.activeElement);
    const step = event.key === "ArrowLeft" || event.key === "ArrowUp" ? -1 : 1;
    const next = radios[(at + step + radios.length) % radios.length];
    next.focus();
    chooseMode(next.dataset.mode, false);
  });

  // ---- Autocomplete -------------------------------------------------------------------------
  const suggestionCache = new Map();

  function getJSON(url) {
    const cached = suggestionCache.get(url);
    if (cached && Date.now() - cached.at < SUGGESTION_TTL_MS) return cached.promise;
    const promise = fetch(url, {credentials: "same-origin", headers: {Accept: "application/json"}})
      .then((response) => {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      });
    promise.catch(() => suggestionCache.delete(url));
    suggestionCache.set(url, {at: Date.now(), promise});
    return promise;
  }

  function nodesNote(count) {
    if (count === null || count === undefined) return "nested";
    return count.toLocaleString() + (count === 1 ? " node" : " nodes");
  }

  async function factNameSuggestions(typed) {
    const data = await getJSON(factsUrl);
    const lower = typed.trim().toLowerCase();
    const starting = [];
    const containing = [];
    data.facts.forEach((fact) => {
      const name = fact.name.toLowerCase();
      if (name.startsWith(lower)) starting.push(fact);
      else if (lower && name.includes(lower)) containing.push(fact);
    });
    const found = starting.concat(containing);
    return {
      items: found.slice(0, SUGGESTIONS).map((f) => ({value: f.name, note: nodesNote(f.nodes)})),
      more: found.length > SUGGESTIONS,
    };
  }

  function valuesUrlFor(row, prefix) {
    const params = new URLSearchParams({kind: row.kind, q: prefix, limit: String(SUGGESTIONS)});
    if (row.kind === "fact") params.set("fact", row.name.trim());
    return valuesUrl + "?" + params;
  }

  async function valueSuggestions(row, typed) {
    if (row.kind === "fact" && !FACT_NAME.test(row.name.trim())) return {items: [], more: false};
    let value = typed;
    if (isRegexOp(row.op) && value.startsWith("/")) value = value.slice(1);
    const lower = value.toLowerCase();
    // The most common values first; ask again with the prefix only when they are not all.
    let data = await getJSON(valuesUrlFor(row, ""));
    if (lower && !data.complete) data = await getJSON(valuesUrlFor(row, lower));
    const found = data.values.filter((v) => v.value.toLowerCase().startsWith(lower));
    return {
      items: found.map((v) => ({value: v.value, note: nodesNote(v.nodes)})),
      more: !data.complete,
    };
  }

  // ---- Drawing ------------------------------------------------------------------------------
  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([key, value]) => {
      if (key === "text") node.textContent = value;
      else node.setAttribute(key, value);
    });
    (children || []).forEach((child) => node.appendChild(
      typeof child === "string" ? document.createTextNode(child) : child));
    return node;
  }

  function select(choices, value, attrs) {
    const node = el("select", attrs);
    choices.forEach(([optionValue, label]) => {
      const option = el("option", {value: optionValue, text: label});
      option.selected = optionValue === value;
      node.appendChild(option);
    });
    return node;
  }

  const KINDS = [["fact", "fact"], ["class", "class"], ["agent", "agent"], ["identity", "identity"]];
  const FACT_OPERATORS = [
    ["==", "== is"], ["!=", "!= is not"], ["<", "< less than"], [">", "> more than"],
    ["<=", "<= at most"], [">=", ">= at least"], ["=~", "=~ matches regex"],
    ["!~", "!~ does not match"],
  ];
  const NAME_OPERATORS = [["==", "is"], ["=~", "matches regex"]];
  const PLACEHOLDERS = {fact: "value", class: "class name", agent: "agent name", identity: "identity"};

  function notToggle(item, label) {
    const box = el("input", {type: "checkbox", id: "fb-" + item.id + "-not", "aria-label": label + ": not",
      "data-focus": item.id + ":not"});
    box.checked = item.negated;
    box.addEventListener("change", () => {
      item.negated = box.checked;
      box.closest(".fb-row, .fb-group").classList.toggle("fb-negated", item.negated);
      changed(0);
    });
    return el("label", {class: "fb-not", title: "Negate: nodes that do not match"}, [box, "not"]);
  }

  function removeButton(item, label) {
    const button = el("button", {type: "button", class: "fb-remove", "aria-label": "Remove " + label,
      title: "Remove " + label, text: "×"});
    button.addEventListener("click", () => removeItem(item.id));
    return button;
  }

  function renderRow(row, number) {
    const label = "Condition " + number;
    const li = el("li", {class: "fb-row" + (row.negated ? " fb-negated" : ""), "data-id": row.id});
    const kind = select(KINDS, row.kind, {"aria-label": label + " kind", "data-focus": row.id + ":kind"});
    kind.addEventListener("change", () => {
      row.kind = kind.value;
      if (row.kind !== "fact" && !["==", "=~"].includes(row.op)) row.op = "==";
      row.value = "";
      changed(0);
      render(row.id + ":kind");
    });

    const nameCell = el("div", {class: "fb-combo fb-name"});
    if (row.kind === "fact") {
      const name = el("input", {type: "text", value: row.name, placeholder: "fact name", spellcheck: "false",
        "aria-label": label + " fact", "data-focus": row.id + ":name", maxlength: "255"});
      const validity = () => {
        const bad = row.name.trim() !== "" && !FACT_NAME.test(row.name.trim());
        name.setAttribute("aria-invalid", String(bad));
        name.title = bad ? "A fact name has letters, digits, _ . and - only" : "";
      };
      validity();
      name.addEventListener("input", () => { row.name = name.value; validity(); changed(TYPING_DELAY_MS); });
      const list = combobox(name, "fb-" + row.id + "-facts", factNameSuggestions, (picked) => {
        name.value = picked;
        row.name = picked;
        validity();
        changed(0);
        getJSON(valuesUrlFor(row, "")).catch(() => {});  // ready before the value is focused
        li.querySelector(".fb-value input").focus();
      });
      name.addEventListener("change", () => { if (FACT_NAME.test(row.name.trim())) getJSON(valuesUrlFor(row, "")).catch(() => {}); });
      nameCell.append(name, list);
    }

    const operator = select(row.kind === "fact" ? FACT_OPERATORS : NAME_OPERATORS, row.op,
      {"aria-label": label + " operator", "data-focus": row.id + ":op"});
    operator.addEventListener("change", () => {
      row.op = operator.value;
      valueField.placeholder = placeholderFor(row);
      changed(0);
    });

    const valueCell = el("div", {class: "fb-combo fb-value"});
    const valueField = el("input", {type: "text", value: row.value, placeholder: placeholderFor(row),
      spellcheck: "false", "aria-label": label + " value", "data-focus": row.id + ":value"});
    valueField.addEventListener("input", () => { row.value = valueField.value; changed(TYPING_DELAY_MS); });
    const valueList = combobox(valueField, "fb-" + row.id + "-values", (typed) => valueSuggestions(row, typed), (picked) => {
      valueField.value = picked;
      row.value = picked;
      changed(0);
    });
    valueCell.append(valueField, valueList);

    li.append(notToggle(row, label), kind, nameCell, operator, valueCell, removeButton(row, label.toLowerCase()));
    return li;
  }

  function placeholderFor(row) {
    return isRegexOp(row.op) ? "regex, e.g. ^web" : PLACEHOLDERS[row.kind];
  }

  function renderItems(group, depth, counter) {
    const list = el("ol", {class: "fb-items"});
    group.items.forEach((item) => {
      if (item.type === "row") {
        counter.rows += 1;
        list.appendChild(renderRow(item, counter.rows));
      } else {
        list.appendChild(renderGroup(item, depth + 1, counter));
      }
    });
    if (!group.items.length) {
      list.appendChild(el("li", {class: "fb-empty muted", text: depth ? "An empty group matches every node." : "No conditions: every node matches."}));
    }
    return list;
  }

  function matchSelect(group, label) {
    const node = select([["all", "all"], ["any", "any"]], group.match,
      {"aria-label": label, "data-focus": group.id + ":match", class: "fb-match"});
    node.addEventListener("change", () => { group.match = node.value; changed(0); });
    return node;
  }

  function actions(group, depth, label) {
    const addRow = el("button", {type: "button", class: "secondary small fb-add-row", text: "+ Condition",
      "aria-label": "Add a condition to " + label});
    addRow.addEventListener("click", () => addCondition(group, null));
    const buttons = [addRow];
    if (depth < MAX_GROUP_DEPTH) {
      const addGroup = el("button", {type: "button", class: "secondary small fb-add-group", text: "+ Group",
        "aria-label": "Add a group to " + label});
      addGroup.addEventListener("click", () => {
        const inner = newGroup({match: "any", items: [newRow()]});
        group.items.push(inner);
        changed(0);
        render(inner.items[0].id + ":name");
      });
      buttons.push(addGroup);
    }
    return el("div", {class: "fb-actions"}, buttons);
  }

  function renderGroup(group, depth, counter) {
    counter.groups += 1;
    const label = "group " + counter.groups;
    const head = el("div", {class: "fb-group-head"}, [
      notToggle(group, "Group " + counter.groups),
      matchSelect(group, "Group " + counter.groups + " matches"),
      el("span", {text: "of:"}),
      removeButton(group, label),
    ]);
    const node = el("li", {class: "fb-group" + (group.negated ? " fb-negated" : ""), "data-id": group.id,
      role: "group", "aria-label": "Group " + counter.groups});
    node.append(head, renderItems(group, depth, counter), actions(group, depth, label));
    return node;
  }

  function render(focusKey) {
    const counter = {rows: 0, groups: 0};
    const head = el("div", {class: "fb-group-head"}, [
      el("span", {text: "Nodes matching"}),
      matchSelect(state.tree, "Nodes must match"),
      el("span", {text: "of these conditions:"}),
    ]);
    const root = el("div", {class: "fb-root", "data-id": state.tree.id, role: "group",
      "aria-label": "Filter builder"});
    root.append(head, renderItems(state.tree, 0, counter), actions(state.tree, 0, "the filter"));
    host.replaceChildren(root);
    if (focusKey) {
      const target = host.querySelector('[data-focus="' + focusKey + '"]');
      if (target) target.focus();
    }
  }

  // ---- Changing the tree --------------------------------------------------------------------
  function addCondition(group, after) {
    const row = newRow({kind: after ? after.kind : "fact"});
    const at = after ? group.items.indexOf(after) + 1 : group.items.length;
    group.items.splice(at, 0, row);
    changed(0);
    render(row.id + (row.kind === "fact" ? ":name" : ":value"));
  }

  function removeItem(id) {
    const found = find(id);
    if (!found || !found.parent) return;
    const siblings = found.parent.items;
    const at = siblings.indexOf(found.item);
    siblings.splice(at, 1);
    changed(0);
    const next = siblings[at] || siblings[at - 1];
    const focusKey = next
      ? next.id + (next.type === "row" ? ":kind" : ":not")
      : null;
    render(focusKey);
    if (!next) {
      const add = host.querySelector('[data-id="' + found.parent.id + '"] .fb-add-row');
      if (add) add.focus();
    }
  }

  // Enter in a condition adds one after it; Enter in a group's heading adds one to the group.
  host.addEventListener("keydown", (event) => {
    if (event.key !== "Enter" || event.defaultPrevented || event.target.tagName === "BUTTON") return;
    const rowNode = event.target.closest(".fb-row");
    const headNode = event.target.closest(".fb-group-head");
    if (!rowNode && !headNode) return;
    event.preventDefault();  // never submit the job form from the builder
    if (rowNode) {
      const found = find(Number(rowNode.dataset.id));
      if (found) addCondition(found.parent, found.item);
    } else {
      const groupNode = headNode.closest("[data-id]");
      const found = find(Number(groupNode.dataset.id));
      if (found) addCondition(found.item, null);
    }
  });

  // A syntax error the preview reports (a bad fact name, an unsafe regex): mark its row.
  function clearRowErrors() {
    host.querySelectorAll(".fb-row-error").forEach((row) => {
      row.classList.remove("fb-row-error");
      row.removeAttribute("title");
    });
  }

  input.addEventListener("filter-preview", (event) => {
    clearRowErrors();
    const {state: shown, text, data} = event.detail;
    if (state.mode !== "builder" || shown !== "error" || !data || !data.column) return;
    if (text !== state.generated) return;
    // The server counts columns in code points, the spans in UTF-16 code units (as JavaScript
    // strings do): an emoji before the error is one column there and two units here.
    const at = Array.from(text).slice(0, data.column - 1).join("").length;
    for (const [id, [start, end]] of state.spans) {
      if (at >= start && at < end) {
        const row = host.querySelector('.fb-row[data-id="' + id + '"]');
        if (row) { row.classList.add("fb-row-error"); row.title = data.error; }
      }
    }
  });

  // ---- Start --------------------------------------------------------------------------------
  // Put ``text`` in the filter (a saved filter): as rows when it fits, else as text.
  function load(text) {
    input.value = text;
    if (state.mode === "builder") toBuilder();
    preview(0);
  }

  let preferred = "builder";
  try { preferred = window.localStorage.getItem(STORAGE_KEY) || "builder"; } catch (err) { /* none */ }
  modeSwitch.hidden = false;
  if (preferred === "builder") toBuilder();
  else toText("");
  // The fact names now: the first field the operator opens should not wait for them.
  getJSON(factsUrl).catch(() => {});

  window.switchboardFilterBuilder = {
    load,
    mode: () => state.mode,
    setMode: (mode) => chooseMode(mode, false),
    // For tests: the builder's reading of a text, and the text of that reading.
    roundTrip(text) {
      try {
        return {fits: true, text: generate(treeFromText(text)).text};
      } catch (err) {
        if (err instanceof TextError) return {fits: false, syntax: true, message: err.message, column: err.column};
        if (err instanceof NoFit) return {fits: false, syntax: false, message: err.message};
        throw err;
      }
    },
  };
})();
