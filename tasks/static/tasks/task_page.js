// Task page guidance: the guideline panel remembers whether it was closed (per task type), and keys
// answer the review form (y/n for yes-or-no questions, 1-5 on a scale, j/k to move, ? for the list).
// No inline scripts: everything hangs off classes and data attributes of tasks/task.html.
(function () {
  "use strict";

  var STORAGE_PREFIX = "guidelines-open:";

  function rememberGuidelines() {
    document.querySelectorAll("details[data-guidelines]").forEach(function (panel) {
      var key = STORAGE_PREFIX + panel.dataset.guidelines;
      var saved = null;
      try { saved = window.localStorage.getItem(key); } catch (error) { return; }
      if (saved !== null) panel.open = saved === "1";
      panel.addEventListener("toggle", function () {
        try { window.localStorage.setItem(key, panel.open ? "1" : "0"); } catch (error) { /* storage off */ }
      });
    });
  }

  function typing(target) {
    if (!target) return false;
    if (target.isContentEditable) return true;
    var tag = (target.tagName || "").toLowerCase();
    if (tag === "textarea" || tag === "select") return true;
    return tag === "input" && target.type !== "radio" && target.type !== "checkbox";
  }

  function reviewKeys() {
    var form = document.querySelector("form.labels");
    if (!form) return;
    var questions = Array.prototype.slice.call(form.querySelectorAll("fieldset.label-field"));
    if (!questions.length) return;
    var shortcuts = document.querySelector("details[data-shortcuts]");
    var current = 0;

    var makeCurrent = function (index, moveFocus) {
      current = Math.max(0, Math.min(questions.length - 1, index));
      questions.forEach(function (question, i) { question.classList.toggle("current", i === current); });
      if (moveFocus) {
        var question = questions[current];
        var radio = question.querySelector("input:checked") || question.querySelector("input");
        if (radio) radio.focus({ preventScroll: true });
        question.scrollIntoView({ block: "nearest" });
      }
    };
    var answer = function (radio) {
      radio.checked = true;
      radio.dispatchEvent(new Event("change", { bubbles: true }));
      makeCurrent(current + 1, true);
    };

    questions.forEach(function (question, index) {
      question.addEventListener("focusin", function () { makeCurrent(index, false); });
      question.addEventListener("click", function () { makeCurrent(index, false); });
    });
    makeCurrent(0, false);

    document.addEventListener("keydown", function (event) {
      if (event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) return;
      var key = event.key;
      var question = questions[current];
      var radios = question.querySelectorAll('input[type="radio"]');
      var likert = question.classList.contains("likert");
      var chosen = null;
      if (key === "?") {
        if (shortcuts) shortcuts.open = !shortcuts.open;
      } else if (key === "j") {
        makeCurrent(current + 1, true);
      } else if (key === "k") {
        makeCurrent(current - 1, true);
      } else if (likert && /^[1-9]$/.test(key)) {
        chosen = radios[parseInt(key, 10) - 1] || null;
        if (!chosen) return;
      } else if (!likert && (key === "y" || key === "n")) {
        chosen = question.querySelector('input[type="radio"][value="' + (key === "y" ? "1" : "0") + '"]');
        if (!chosen) return;
      } else {
        return;
      }
      event.preventDefault();
      if (chosen) answer(chosen);
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    rememberGuidelines();
    reviewKeys();
  });
})();
