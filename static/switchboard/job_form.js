// Shows only the inputs of the chosen action; disabled fieldsets are not submitted.
(function () {
  "use strict";
  const select = document.getElementById("agent-action");
  const fieldsets = document.querySelectorAll("fieldset.inputs");
  function showChosen() {
    fieldsets.forEach((fs) => { fs.disabled = fs.dataset.action !== select.value; });
  }
  select.addEventListener("change", showChosen);
  showChosen();
})();
