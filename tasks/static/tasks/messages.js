// Messages pages: bring the selected message into view (app.js shows refusals in place inside
// [data-swap-errors]). No inline scripts.
(function () {
  "use strict";

  document.addEventListener("DOMContentLoaded", function () {
    var selected = document.querySelector(".msg.selected");
    if (selected) selected.scrollIntoView({ block: "center" });
  });
})();
