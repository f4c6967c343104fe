// The job form: only the chosen action's inputs are shown (disabled fieldsets are not
// submitted), Enter does not send an action that changes nodes, and saved filters: pick one to start from, save the current one, delete your own.
(function () {
  "use strict";
  const select = document.getElementById("agent-action");
  const fieldsets = document.querySelectorAll("fieldset.inputs");
  function showChosen() {
    fieldsets.forEach((fs) => { fs.disabled = fs.dataset.action !== select.value; });
  }
  if (select) {
    select.addEventListener("change", showChosen);
    showChosen();
  }
})();

// Enter never sends an action that changes nodes (DDL changes_node): in a text field of the
// form it would submit it, so for such an action only the Run button goes on. The
// confirmation page guards the same way without script (a disabled first submit button).
(function () {
  "use strict";
  const form = document.getElementById("job-form");
  const select = document.getElementById("agent-action");
  const hint = document.getElementById("enter-guard-hint");
  if (!form || !select) return;
  function changesNode() {
    const chosen = select.options[select.selectedIndex];
    return Boolean(chosen && chosen.hasAttribute("data-changes-node"));
  }
  select.addEventListener("change", () => { if (hint) hint.textContent = ""; });
  form.addEventListener("keydown", (event) => {
    // Widgets that use Enter themselves (the filter builder, saving a filter) prevent it first.
    if (event.key !== "Enter" || event.defaultPrevented || !changesNode()) return;
    const target = event.target;
    if (target.tagName !== "INPUT" || ["submit", "button", "checkbox", "radio"].includes(target.type)) return;
    event.preventDefault();
    if (hint) hint.textContent = "This action changes the nodes: Enter does not send it; use the Run button.";
  });
})();

(function () {
  "use strict";
  const box = document.getElementById("saved-filters");
  const picker = document.getElementById("saved-filter");
  const filter = document.getElementById("filter");
  const saveBox = document.getElementById("save-filter");
  if (!box || !picker || !filter || !saveBox) return;
  const url = box.dataset.url;
  const deleteButton = document.getElementById("saved-filter-delete");
  const status = document.getElementById("saved-filter-status");
  const openButton = document.getElementById("save-filter-open");
  const form = document.getElementById("save-filter-form");
  const nameField = document.getElementById("save-filter-name");
  const shareField = document.getElementById("save-filter-share");
  const submit = document.getElementById("save-filter-submit");
  const cancel = document.getElementById("save-filter-cancel");
  const error = document.getElementById("save-filter-error");
  let saved = [];

  function csrfToken() {
    const field = document.querySelector("#job-form [name=csrfmiddlewaretoken]");
    return field ? field.value : "";
  }

  async function call(method, path, body) {
    const headers = {Accept: "application/json"};
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (method !== "GET") headers["X-CSRFToken"] = csrfToken();
    const response = await fetch(path, {
      method, headers, credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const data = response.status === 204 ? null : await response.json().catch(() => null);
    return {status: response.status, data};
  }

  function option(value, text) {
    const node = document.createElement("option");
    node.value = value;
    node.textContent = text;
    return node;
  }

  function say(message) { status.textContent = message; }

  // The picker: the operator's own filters, then those shared with each of their roles.
  function drawPicker(selectedId) {
    const groups = new Map([["", []]]);
    saved.forEach((item) => {
      const key = item.mine ? "" : item.shared_with;
      if (!groups.has(key)) groups.set(key, []);
      groups.get(key).push(item);
    });
    const nodes = [option("", saved.length ? "Start from a saved filter…" : "No saved filters yet")];
    groups.forEach((items, role) => {
      if (!items.length) return;
      const group = document.createElement("optgroup");
      group.label = role ? "Shared with " + role : "Mine";
      items.forEach((item) => {
        const text = item.name + (item.mine && item.shared_with ? " (shared with " + item.shared_with + ")" : "")
          + (item.mine ? "" : " — " + item.owner);
        group.appendChild(option(String(item.id), text));
      });
      nodes.push(group);
    });
    picker.replaceChildren(...nodes);
    picker.value = selectedId ? String(selectedId) : "";
    showDelete();
  }

  function chosen() {
    return saved.find((item) => String(item.id) === picker.value) || null;
  }

  function showDelete() {
    const item = chosen();
    deleteButton.hidden = !(item && item.mine);
    if (item) deleteButton.setAttribute("aria-label", "Delete the saved filter " + item.name);
  }

  async function reload(selectedId) {
    const answer = await call("GET", url);
    if (answer.status !== 200 || !answer.data) {
      say("Saved filters are unavailable (HTTP " + answer.status + ").");
      return;
    }
    saved = answer.data.results;
    const roles = answer.data.roles;
    shareField.replaceChildren(option("", "Only me"), ...roles.map((role) => option(role, "Role " + role)));
    drawPicker(selectedId);
  }

  picker.addEventListener("change", () => {
    showDelete();
    const item = chosen();
    if (!item) return;
    if (window.switchboardFilterBuilder) window.switchboardFilterBuilder.load(item.expression);
    else {
      filter.value = item.expression;
      filter.dispatchEvent(new Event("input"));
    }
    say("Started from “" + item.name + "”.");
  });

  deleteButton.addEventListener("click", async () => {
    const item = chosen();
    if (!item || !window.confirm("Delete the saved filter “" + item.name + "”?")) return;
    const answer = await call("DELETE", url + item.id + "/");
    if (answer.status === 204) {
      say("Deleted “" + item.name + "”.");
      await reload(null);
    } else {
      say(errorText(answer) || "Could not delete it (HTTP " + answer.status + ").");
    }
  });

  function errorText(answer) {
    const errors = answer.data && answer.data.errors;
    if (!errors) return "";
    const names = {name: "Name", expression: "Filter", shared_with: "Share with", owner: "Owner"};
    return Object.entries(errors).map(([field, message]) => (names[field] || field) + ": " + message).join(". ");
  }

  function openForm(open) {
    form.hidden = !open;
    openButton.setAttribute("aria-expanded", String(open));
    error.hidden = true;
    if (open) nameField.focus();
    else openButton.focus();
  }

  async function save() {
    error.hidden = true;
    nameField.removeAttribute("aria-invalid");
    const answer = await call("POST", url, {
      name: nameField.value, expression: filter.value, shared_with: shareField.value || null,
    });
    if (answer.status === 201) {
      const item = answer.data;
      form.hidden = true;
      openButton.setAttribute("aria-expanded", "false");
      nameField.value = "";
      await reload(item.id);
      say("Saved “" + item.name + "”" + (item.shared_with ? ", shared with " + item.shared_with : "") + ".");
      return;
    }
    error.hidden = false;
    error.textContent = errorText(answer) || "Could not save it (HTTP " + answer.status + ").";
    if (answer.data && answer.data.errors && answer.data.errors.name) {
      nameField.setAttribute("aria-invalid", "true");
      nameField.focus();
    }
  }

  openButton.addEventListener("click", () => openForm(form.hidden));
  cancel.addEventListener("click", () => openForm(false));
  submit.addEventListener("click", save);
  form.addEventListener("keydown", (event) => {
    // Enter saves the filter (it must not submit the job form); Escape closes.
    if (event.key === "Enter" && event.target.tagName !== "BUTTON") { event.preventDefault(); save(); }
    if (event.key === "Escape") { event.preventDefault(); openForm(false); }
  });

  box.hidden = false;
  saveBox.hidden = false;
  reload(null).catch((err) => say("Saved filters are unavailable: " + err.message));
})();
