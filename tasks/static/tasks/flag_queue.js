// The flagged queue: j / k move between rows; d (dismiss), x (delete), b (delete and ban) open the
// decision's page, which asks for the reason.
(function () {
  "use strict";
  document.addEventListener("DOMContentLoaded", function () {
    var rows = Array.prototype.slice.call(document.querySelectorAll("#result_list tbody tr"));
    if (!rows.length) return;
    var current = 0;
    var mark = function () {
      rows.forEach(function (row, index) { row.classList.toggle("selected", index === current); });
      rows[current].scrollIntoView({ block: "nearest" });
    };
    mark();
    document.addEventListener("keydown", function (event) {
      var tag = (event.target.tagName || "").toLowerCase();
      if (tag === "input" || tag === "textarea" || tag === "select" || event.ctrlKey || event.metaKey) return;
      var decisions = { d: "dismiss", x: "delete", b: "ban" };
      if (event.key === "j") { current = Math.min(rows.length - 1, current + 1); mark(); }
      else if (event.key === "k") { current = Math.max(0, current - 1); mark(); }
      else if (decisions[event.key]) {
        var button = rows[current].querySelector('[data-decision="' + decisions[event.key] + '"]');
        if (button) button.click();
      }
    });
  });
})();
