// Choices for DDL inputs that name a fact (choices_from_fact): the values that fact has on the
// nodes the filter currently targets, offered in the input's <datalist>. Refreshed after each
// preview answer (the "filter-preview" event) and when the action changes. Suggestions only:
// the DDL's validation still decides, on the node and in the portal.
(function () {
  "use strict";
  const filter = document.getElementById("filter");
  const action = document.getElementById("agent-action");
  if (!filter) return;
  let generation = 0;

  function visibleInputs() {
    return Array.from(document.querySelectorAll("fieldset.inputs:not([disabled]) input[data-choices-fact]"));
  }

  async function refresh() {
    const mine = ++generation;
    for (const input of visibleInputs()) {
      const list = document.getElementById(input.getAttribute("list"));
      const hint = document.getElementById(input.id + "-choices-hint");
      const params = new URLSearchParams({fact: input.dataset.choicesFact, filter: filter.value});
      let data;
      try {
        const response = await fetch(hint.dataset.url + "?" + params, {headers: {Accept: "application/json"}});
        if (!response.ok) { hint.textContent = ""; continue; }
        data = await response.json();
      } catch (error) {
        hint.textContent = "";
        continue;
      }
      if (mine !== generation) return; // a newer filter is being asked about
      list.replaceChildren(...data.values.map((item) => {
        const option = document.createElement("option");
        option.value = item.value;
        option.label = item.value + " (" + item.nodes + " node" + (item.nodes === 1 ? "" : "s") + ")";
        return option;
      }));
      hint.textContent = data.values.length
        ? data.values.length + " value" + (data.values.length === 1 ? "" : "s") + " of fact " +
          data.fact + " on the targeted nodes" + (data.truncated ? " (first " + data.nodes + " nodes)" : "")
        : "no targeted node has fact " + data.fact;
    }
  }

  filter.addEventListener("filter-preview", (event) => {
    if (event.detail && event.detail.state !== "error") refresh();
  });
  if (action) action.addEventListener("change", () => setTimeout(refresh, 0));
  refresh();
})();
