// OASST pages: drafts that survive a reload, counters, ranking by drag-and-drop and keyboard,
// one-key shortcuts, htmx refusals shown in place. No inline scripts: everything hangs off data attributes.
(function () {
  "use strict";

  function drafts() {
    document.querySelectorAll("textarea[data-draft-key]").forEach(function (area) {
      var key = area.dataset.draftKey;
      var form = area.form;
      var dirty = false;
      if (!area.value) {
        var saved = window.localStorage.getItem(key);
        if (saved) {
          area.value = saved;
          dirty = true;
        }
      }
      area.addEventListener("input", function () {
        window.localStorage.setItem(key, area.value);
        dirty = area.value.trim().length > 0;
      });
      if (form) {
        // The draft stays until the server accepts the text: its thank-you page clears it (data-draft-clear).
        form.addEventListener("submit", function () { dirty = false; });
      }
      window.addEventListener("beforeunload", function (event) {
        if (dirty) {
          event.preventDefault();
          event.returnValue = "";
        }
      });
    });
  }

  function draftsAccepted() {
    document.querySelectorAll("[data-draft-clear]").forEach(function (element) {
      window.localStorage.removeItem(element.dataset.draftClear);
    });
  }

  // A text over the limit is kept whole (no maxlength to cut a paste): the counter says by how much,
  // and the browser refuses to submit it with the page's message.
  function counters() {
    document.querySelectorAll("[data-counter-for]").forEach(function (counter) {
      var area = document.getElementById(counter.dataset.counterFor);
      if (!area) return;
      var limit = parseInt(area.dataset.maxLength || area.maxLength, 10);
      var update = function () {
        var over = area.value.length - limit;
        counter.textContent = area.value.length + " / " + limit +
          (over > 0 ? " · " + counter.dataset.tooLong.replace("%(over)s", over) : "");
        counter.classList.toggle("over", over > 0);
        area.setCustomValidity(over > 0 ? counter.dataset.invalid : "");
      };
      area.addEventListener("input", update);
      update();
    });
  }

  function rankings() {
    document.querySelectorAll("[data-ranking]").forEach(function (list) {
      var status = document.getElementById("rank-status");
      var dragged = null;
      var renumber = function (moved) {
        Array.prototype.forEach.call(list.children, function (item, index) {
          var position = item.querySelector(".position");
          if (position) position.textContent = index + 1;
        });
        if (moved && status) {
          var place = Array.prototype.indexOf.call(list.children, moved) + 1;
          status.textContent = moved.getAttribute("aria-label") + ": " + place;
        }
      };
      var disabled = function () { return list.getAttribute("aria-disabled") === "true"; };
      var move = function (item, index) {
        if (disabled()) return;
        var items = list.children;
        index = Math.max(0, Math.min(items.length - 1, index));
        var current = Array.prototype.indexOf.call(items, item);
        if (index === current) return;
        list.removeChild(item);
        list.insertBefore(item, list.children[index] || null);
        item.focus();
        renumber(item);
      };
      list.addEventListener("keydown", function (event) {
        var item = event.target.closest("li");
        if (!item || event.target !== item) return;
        var index = Array.prototype.indexOf.call(list.children, item);
        if (event.key === "ArrowUp") { move(item, index - 1); event.preventDefault(); }
        else if (event.key === "ArrowDown") { move(item, index + 1); event.preventDefault(); }
        else if (/^[1-9]$/.test(event.key)) { move(item, parseInt(event.key, 10) - 1); event.preventDefault(); }
      });
      list.addEventListener("click", function (event) {
        var button = event.target.closest("[data-move]");
        if (!button) return;
        var item = button.closest("li");
        var index = Array.prototype.indexOf.call(list.children, item);
        move(item, button.dataset.move === "up" ? index - 1 : index + 1);
      });
      list.addEventListener("dragstart", function (event) {
        dragged = event.target.closest("li");
        if (dragged) dragged.classList.add("dragging");
      });
      list.addEventListener("dragend", function () {
        if (dragged) dragged.classList.remove("dragging");
        dragged = null;
      });
      list.addEventListener("dragover", function (event) {
        event.preventDefault();
        var over = event.target.closest("li");
        if (!dragged || !over || over === dragged || disabled()) return;
        var rect = over.getBoundingClientRect();
        var after = event.clientY > rect.top + rect.height / 2;
        list.insertBefore(dragged, after ? over.nextSibling : over);
        renumber(null);
      });
      list.addEventListener("drop", function (event) {
        event.preventDefault();
        renumber(dragged);
      });
      // "All replies are bad" sends no ranking: the list and its fields are off while the box is ticked.
      var form = list.closest("form");
      var notRankable = form && form.querySelector("[data-not-rankable]");
      if (notRankable) {
        var apply = function () {
          list.setAttribute("aria-disabled", notRankable.checked ? "true" : "false");
          list.querySelectorAll('input[name="ranking"], [data-move]').forEach(function (field) {
            field.disabled = notRankable.checked;
          });
          Array.prototype.forEach.call(list.children, function (item) { item.draggable = !notRankable.checked; });
        };
        notRankable.addEventListener("change", apply);
        apply();
      }
    });
  }

  // htmx leaves 4xx answers unswapped and says nothing when the network fails: inside
  // [data-swap-errors] the refusal is shown in place, and [data-send-error] gives the network's message.
  function htmxErrors() {
    var source = function (event) {  // the element that made the request (detail.elt is its target here)
      return event.detail.requestConfig ? event.detail.requestConfig.elt : event.detail.elt;
    };
    document.addEventListener("htmx:beforeSwap", function (event) {
      var status = event.detail.xhr.status;
      if (status >= 400 && status < 500 && source(event).closest("[data-swap-errors]")) {
        event.detail.shouldSwap = true;
        event.detail.isError = false;
      }
    });
    document.addEventListener("htmx:sendError", function (event) {
      var owner = source(event).closest("[data-send-error]");
      var target = event.detail.target;
      if (!owner || !target) return;
      var message = document.createElement("span");
      message.className = "error";
      message.setAttribute("role", "alert");
      message.textContent = owner.dataset.sendError;
      target.replaceChildren(message);
    });
  }

  function autosubmit() {
    document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
      select.addEventListener("change", function () { select.form.submit(); });
    });
  }

  function shortcuts() {
    document.addEventListener("keydown", function (event) {
      var tag = (event.target.tagName || "").toLowerCase();
      if (tag === "input" || tag === "textarea" || tag === "select" || event.ctrlKey || event.metaKey || event.altKey) {
        return;
      }
      var target = document.querySelector('[data-shortcut="' + event.key + '"]');
      if (target) {
        event.preventDefault();
        target.click();
      }
    });
  }

  htmxErrors();
  document.addEventListener("DOMContentLoaded", function () {
    draftsAccepted();
    drafts();
    counters();
    rankings();
    autosubmit();
    shortcuts();
  });
})();
