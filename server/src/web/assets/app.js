// Fieldsync managers' pages: conveniences only. Every page works without this file.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  var bulk = document.getElementById("bulk");
  if (bulk) {
    var boxes = Array.prototype.slice.call(bulk.querySelectorAll("input.select"));
    var buttons = Array.prototype.slice.call(bulk.querySelectorAll("fieldset.bulk button"));
    var count = bulk.querySelector(".selected-count");
    var headCell = bulk.querySelector("thead th");
    var all = null;
    if (boxes.length && headCell) {
      all = document.createElement("input");
      all.type = "checkbox";
      all.id = "select-all";
      var label = document.createElement("label");
      label.htmlFor = "select-all";
      label.className = "visually-hidden";
      label.textContent = "Select every report listed";
      headCell.appendChild(all);
      headCell.appendChild(label);
      all.addEventListener("change", function () {
        boxes.forEach(function (b) { b.checked = all.checked; });
        update();
      });
    }
    function update() {
      var n = boxes.filter(function (b) { return b.checked; }).length;
      buttons.forEach(function (b) { b.disabled = n === 0; });
      if (count) { count.textContent = n ? " · " + n + " selected" : ""; }
      if (all) {
        all.checked = n > 0 && n === boxes.length;
        all.indeterminate = n > 0 && n < boxes.length;
      }
    }
    boxes.forEach(function (b) { b.addEventListener("change", update); });
    update();
  }
  // The Import page: the chosen CSV file fills the form's text field (the
  // form posts text; without this script the administrator pastes it).
  var file = document.getElementById("file");
  var csv = document.getElementById("csv");
  if (file && csv) {
    file.addEventListener("change", function () {
      var chosen = file.files && file.files[0];
      if (!chosen) { return; }
      var reader = new FileReader();
      reader.onload = function () { csv.value = String(reader.result); };
      reader.readAsText(chosen);
    });
  }
  // A request for changes needs a comment: say so before the round trip.
  document.querySelectorAll("form").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      var button = event.submitter;
      var comment = form.querySelector("textarea[name=comment]");
      if (button && button.value === "request_changes" && comment && !comment.value.trim()) {
        event.preventDefault();
        comment.setAttribute("aria-invalid", "true");
        comment.focus();
        comment.setCustomValidity("Say what to change: a comment is required.");
        comment.reportValidity();
        comment.addEventListener("input", function () { comment.setCustomValidity(""); }, { once: true });
      }
    });
  });
});
