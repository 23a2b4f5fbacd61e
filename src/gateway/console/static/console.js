// Autonomy Gateway console: live updates and keyboard shortcuts. The pages work without this file.
(function () {
  "use strict";
  var csrf = document.body.getAttribute("data-csrf");
  var status = document.getElementById("live-status");
  var regions = Array.prototype.slice.call(document.querySelectorAll("[data-live]"));

  function refresh(region) {
    var url = region.getAttribute("data-live");
    var selected = region.querySelector('[aria-current="true"][data-approval]');
    if (selected && region.hasAttribute("data-keep-selection")) {
      url += (url.indexOf("?") < 0 ? "?" : "&") + "id=" + encodeURIComponent(selected.getAttribute("data-approval"));
    }
    var typing = region.contains(document.activeElement) && /TEXTAREA|INPUT|SELECT/.test(document.activeElement.tagName);
    if (typing) { region.setAttribute("data-stale", "1"); return; }
    fetch(url, { headers: { "X-Requested-With": "console" }, credentials: "same-origin" }).then(function (response) {
      if (response.status === 401) { window.location.reload(); return null; }
      return response.ok ? response.text() : null;
    }).then(function (html) {
      if (html !== null && html !== undefined) { region.innerHTML = html; region.removeAttribute("data-stale"); }
    });
  }

  if (regions.length && window.EventSource) {
    // What the page was rendered from: the stream says at once if approvals changed since then.
    var seen = document.body.getAttribute("data-live-seen");
    var source = new EventSource("/ui/events" + (seen ? "?seen=" + encodeURIComponent(seen) : ""));
    source.addEventListener("open", function () { if (status) { status.textContent = "live"; } });
    source.addEventListener("error", function () { if (status) { status.textContent = "reconnecting…"; } });
    ["approvals", "tick"].forEach(function (name) {
      source.addEventListener(name, function () {
        regions.forEach(function (region) {
          var on = (region.getAttribute("data-live-on") || "").split(" ");
          if (on.indexOf(name) >= 0) { refresh(region); }
        });
      });
    });
  }

  // Inbox shortcuts: j/k move through the queue, a/d approve or deny the selected call.
  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) { return; }
    var target = event.target;
    if (target && /TEXTAREA|INPUT|SELECT/.test(target.tagName)) { return; }
    var queue = document.querySelector(".queue");
    if (!queue) { return; }
    var items = Array.prototype.slice.call(queue.querySelectorAll("li[data-approval]"));
    var current = queue.querySelector('li[aria-current="true"]');
    var index = items.indexOf(current);
    if (event.key === "j" || event.key === "k") {
      var next = items[Math.max(0, Math.min(items.length - 1, index + (event.key === "j" ? 1 : -1)))];
      if (next && next !== current) { next.querySelector("a").click(); }
      event.preventDefault();
    } else if (event.key === "a" || event.key === "d") {
      var button = document.querySelector('.detail button[data-key="' + event.key + '"]');
      if (!button) { return; }
      event.preventDefault();
      if (event.key === "d") {
        var comment = button.form.querySelector("textarea");
        if (comment && !comment.value.trim()) { comment.focus(); return; }
      }
      button.click();
    }
  });
  void csrf;
})();

// Policies, explain form: choosing another tool fetches that tool's argument fields from the server,
// so the "Show the arguments" button (which does the same without JavaScript) is not needed.
(function () {
  "use strict";
  var select = document.querySelector("select[data-arguments-into]");
  if (!select) { return; }
  var target = document.getElementById(select.getAttribute("data-arguments-into"));
  var button = select.form ? select.form.querySelector("button.show-arguments") : null;
  if (!target) { return; }
  if (button) { button.hidden = true; }

  function fallBack() { if (button) { button.hidden = false; } }

  select.addEventListener("change", function () {
    var tool = select.value;
    var url = select.getAttribute("data-arguments-url") + "?tool=" + encodeURIComponent(tool);
    fetch(url, { headers: { "X-Requested-With": "console" }, credentials: "same-origin" }).then(function (response) {
      if (response.status === 401) { window.location.reload(); return null; }
      return response.ok ? response.text() : null;
    }).then(function (html) {
      if (select.value !== tool) { return; } // another tool was chosen meanwhile; its answer decides
      if (typeof html === "string") { target.innerHTML = html; } else { fallBack(); }
    }, fallBack);
  });
})();
