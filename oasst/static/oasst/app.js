// OASST pages: drafts that survive a reload, counters, ranking by drag-and-drop and keyboard,
// one-key shortcuts. No inline scripts: everything hangs off data attributes.
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
        form.addEventListener("submit", function () {
          dirty = false;
          window.localStorage.removeItem(key);
        });
      }
      window.addEventListener("beforeunload", function (event) {
        if (dirty) {
          event.preventDefault();
          event.returnValue = "";
        }
      });
    });
  }

  function counters() {
    document.querySelectorAll("[data-counter-for]").forEach(function (counter) {
      var area = document.getElementById(counter.dataset.counterFor);
      if (!area) return;
      var update = function () {
        counter.textContent = area.value.length + " / " + area.maxLength;
        counter.classList.toggle("over", area.value.length >= area.maxLength);
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
      var move = function (item, index) {
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
        if (!dragged || !over || over === dragged) return;
        var rect = over.getBoundingClientRect();
        var after = event.clientY > rect.top + rect.height / 2;
        list.insertBefore(dragged, after ? over.nextSibling : over);
        renumber(null);
      });
      list.addEventListener("drop", function (event) {
        event.preventDefault();
        renumber(dragged);
      });
      var notRankable = list.form && list.form.querySelector("[data-not-rankable]");
      if (notRankable) {
        notRankable.addEventListener("change", function () {
          list.classList.toggle("disabled", notRankable.checked);
        });
      }
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

  document.addEventListener("DOMContentLoaded", function () {
    drafts();
    counters();
    rankings();
    autosubmit();
    shortcuts();
  });
})();
