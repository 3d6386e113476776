// Messages pages: bring the selected message into view, and show why a reaction or report was
// refused in place (htmx leaves 4xx answers unswapped by default). No inline scripts.
(function () {
  "use strict";

  document.addEventListener("htmx:beforeSwap", function (event) {
    var status = event.detail.xhr.status;
    if (status >= 400 && status < 500 && event.detail.elt.closest("[data-swap-errors]")) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });

  document.addEventListener("DOMContentLoaded", function () {
    var selected = document.querySelector(".msg.selected");
    if (selected) selected.scrollIntoView({ block: "center" });
  });
})();
