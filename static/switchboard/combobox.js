// A WAI-ARIA combobox: a text field with a list of suggestions from an async source, each a
// value and a note (the filter builder shows node counts). Arrows move, Enter picks, Escape
// closes; a click picks too. window.switchboardCombobox(field, listId, source, onPick) returns
// the list element to place after the field.
(function () {
  "use strict";
  const TYPING_DELAY_MS = 60;

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([key, value]) => {
      if (key === "text") node.textContent = value;
      else node.setAttribute(key, value);
    });
    (children || []).forEach((child) => node.appendChild(child));
    return node;
  }

  function combobox(field, listId, source, onPick) {
    const list = el("ul", {role: "listbox", id: listId, class: "fb-listbox", hidden: ""});
    list.addEventListener("mousedown", (event) => event.preventDefault());  // keep the focus
    field.setAttribute("role", "combobox");
    field.setAttribute("aria-autocomplete", "list");
    field.setAttribute("aria-expanded", "false");
    field.setAttribute("aria-controls", listId);
    field.setAttribute("autocomplete", "off");
    let items = [];
    let active = -1;
    let seq = 0;
    let timer = null;
    // While the list is being redrawn for new text, arrows and Enter wait for it: acting on the
    // old list would pick a value that no longer matches what was typed.
    let stale = false;
    let queued = [];

    function close() {
      seq += 1;
      clearTimeout(timer);
      stale = false;
      queued = [];
      list.hidden = true;
      active = -1;
      field.setAttribute("aria-expanded", "false");
      field.removeAttribute("aria-activedescendant");
    }

    function setActive(index) {
      active = index;
      list.querySelectorAll("[role=option]").forEach((option, i) => {
        option.setAttribute("aria-selected", String(i === index));
        if (i === index) option.scrollIntoView({block: "nearest"});
      });
      if (index >= 0) field.setAttribute("aria-activedescendant", listId + "-" + index);
      else field.removeAttribute("aria-activedescendant");
    }

    function draw(found) {
      // The option the operator moved to stays chosen when a later answer redraws the list.
      const kept = active >= 0 && items[active] ? items[active].value : null;
      items = found.items;
      if (!items.length || document.activeElement !== field) { close(); return; }
      list.replaceChildren(...items.map((item, i) => {
        const option = el("li", {role: "option", id: listId + "-" + i, class: "fb-option",
          "data-value": item.value, "aria-selected": "false"}, [
          el("span", {class: "fb-option-value", text: item.value}),
          el("span", {class: "fb-option-note", text: item.note}),
        ]);
        option.addEventListener("click", () => pick(i));
        return option;
      }));
      if (found.more) list.appendChild(el("li", {class: "fb-option-more", role: "presentation", text: "Type more to narrow the list"}));
      list.hidden = false;
      field.setAttribute("aria-expanded", "true");
      setActive(items.findIndex((item) => item.value === kept));
      stale = false;
      const keys = queued;
      queued = [];
      for (const key of keys) {
        if (key === "down") setActive(Math.min(active + 1, items.length - 1));
        else if (key === "enter") {
          // No option chosen: the Enter was meant for the builder (add a condition).
          if (active >= 0) pick(active);
          else field.dispatchEvent(new KeyboardEvent("keydown", {key: "Enter", bubbles: true}));
          break;
        }
      }
    }

    function refresh(delay) {
      const mine = ++seq;
      stale = true;
      clearTimeout(timer);
      timer = setTimeout(() => {
        source(field.value).then(
          (found) => { if (mine === seq) draw(found); },
          () => { if (mine === seq) close(); });
      }, delay);
    }

    function pick(index) {
      const item = items[index];
      close();
      if (item) onPick(item.value);
    }

    field.addEventListener("focus", () => refresh(0));
    field.addEventListener("input", () => refresh(TYPING_DELAY_MS));
    field.addEventListener("blur", close);
    field.addEventListener("keydown", (event) => {
      const open = !list.hidden;
      if (stale && (event.key === "ArrowDown" || (event.key === "Enter" && (open || queued.length)))) {
        event.preventDefault();
        queued.push(event.key === "Enter" ? "enter" : "down");
      } else if (event.key === "ArrowDown") {
        event.preventDefault();
        if (open) setActive(Math.min(active + 1, items.length - 1));
        else { refresh(0); queued.push("down"); }  // open, on the first option
      } else if (event.key === "ArrowUp" && open) {
        event.preventDefault();
        setActive(Math.max(active - 1, 0));
      } else if (event.key === "Enter" && open && active >= 0) {
        event.preventDefault();  // the builder's own Enter (add a row) does not run
        pick(active);
      } else if (event.key === "Escape" && open) {
        event.preventDefault();
        event.stopPropagation();
        close();
      } else if (event.key === "Tab") {
        close();
      }
    });
    return list;
  }

  window.switchboardCombobox = combobox;
})();
