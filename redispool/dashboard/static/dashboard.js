// redispool dashboard: refresh the live parts of a page every few seconds without a
// full reload, keeping what the user is typing and which rows they have selected. The
// next refresh is planned when the last one has ended, so a slow server never has two
// refreshes of one tab at a time (they used to pile up, each slowing the next).
(function () {
  "use strict";
  var every = parseFloat(document.body.dataset.refresh || "0") * 1000;

  function selected() {
    var out = {};
    document.querySelectorAll("input[type=checkbox][name=ids]:checked").forEach(function (box) {
      out[box.value] = true;
    });
    return out;
  }

  function refresh() {
    if (document.hidden) return Promise.resolve();
    return fetch(window.location.href, { headers: { "X-Live": "1" }, credentials: "same-origin" })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (text) {
        if (!text) return;
        var fresh = new DOMParser().parseFromString(text, "text/html");
        var keep = selected();
        var active = document.activeElement;
        var typing = active && active.matches && active.matches("input[type=text], input[type=number], input:not([type]), textarea, select");
        document.querySelectorAll("[data-live]").forEach(function (old) {
          if (typing && old.contains(active)) return;  // never under the user's cursor
          var next = fresh.getElementById(old.id);
          if (next) old.innerHTML = next.innerHTML;
        });
        document.querySelectorAll("input[type=checkbox][name=ids]").forEach(function (box) {
          box.checked = !!keep[box.value];
        });
      })
      .catch(function () { /* the next tick tries again */ });
  }

  function tick() {
    refresh().then(plan, plan);
  }

  function plan() {
    window.setTimeout(tick, every);
  }

  if (every > 0) plan();

  // "select all" boxes and confirmations for destructive buttons
  document.addEventListener("change", function (event) {
    if (event.target.matches("input[data-select-all]")) {
      document.querySelectorAll("input[type=checkbox][name=ids]").forEach(function (box) {
        box.checked = event.target.checked;
      });
    }
  });
  document.addEventListener("submit", function (event) {
    var message = event.target.dataset.confirm;
    if (message && !window.confirm(message)) event.preventDefault();
  });
})();
