// redispool dashboard: refresh the live parts of a page without a full reload, keeping
// what the user is typing and which rows they have selected.
//
// A page with a live feed (body data-events: /dashboard/events, the event logs of the
// queues it shows) refreshes when a frame comes, at most once a second, and every
// data-fallback seconds besides; a page without one (workers, cues) every data-refresh
// seconds. A tab never has two refreshes at a time: a frame that comes during one asks
// for one more after it (they used to pile up, each slowing the next). A hidden tab
// closes its feed (its connection, and the server's blocked read, are freed) and catches
// up when shown again; a feed the server refused or that broke is opened again after
// RETRY ms (an EventSource retries a dropped stream by itself, sending Last-Event-ID).
(function () {
  "use strict";
  var data = document.body.dataset;
  var feed = data.events || "";
  var every = parseFloat((feed ? data.fallback : data.refresh) || "0") * 1000;
  var GAP = 1000;      // ms between refreshes that frames ask for
  var RETRY = 10000;   // ms before a refused or broken feed is opened again

  var busy = false;    // a refresh is in flight
  var wanted = false;  // a frame asked for a refresh (after the one in flight)
  var started = 0;     // when the last refresh started
  var timer = null;    // the next planned refresh
  var since = 0;       // Redis ms of the newest event heard of: a refresh must show it
  var source = null;   // the EventSource of the feed
  var lastId = "";     // the last frame's id: where to resume

  function selected() {
    var out = {};
    document.querySelectorAll("input[type=checkbox][name=ids]:checked").forEach(function (box) {
      out[box.value] = true;
    });
    return out;
  }

  function refresh() {
    if (document.hidden) return Promise.resolve();
    var headers = { "X-Live": "1" };
    if (since) headers["X-Live-Since"] = String(since);
    return fetch(window.location.href, { headers: headers, credentials: "same-origin" })
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
      .catch(function () { /* the next one tries again */ });
  }

  function plan(delay) {
    if (timer !== null) window.clearTimeout(timer);
    timer = delay === null ? null : window.setTimeout(tick, Math.max(0, delay));
  }

  function tick() {
    timer = null;
    busy = true;
    wanted = false;
    started = Date.now();
    refresh().then(done, done);
  }

  function done() {
    busy = false;
    if (wanted) plan(started + GAP - Date.now());
    else plan(every > 0 ? every : null);
  }

  function soon() {  // a frame came: refresh, within the gap and after the one in flight
    wanted = true;
    if (!busy) plan(started + GAP - Date.now());
  }

  function heard(id) {
    if (!id) return;
    lastId = id;
    var ms = parseInt(id.split("-")[0], 10);
    if (ms > since) since = ms;
  }

  function open() {
    if (!feed || source || document.hidden) return;
    var url = new URL(feed, window.location.href);
    if (lastId) url.searchParams.set("last_event_id", lastId);
    var opened = false;
    source = new EventSource(url.toString());
    source.onmessage = function (message) {
      heard(message.lastEventId);
      soon();
    };
    source.onopen = function () {
      if (opened) soon();  // reconnected: whatever the gap hid shows
      opened = true;
    };
    source.onerror = function () {
      if (source && source.readyState === EventSource.CLOSED) {  // refused (signed out, Redis down)
        source = null;
        window.setTimeout(function () { open(); soon(); }, RETRY);
      }
    };
  }

  function close() {
    if (source) source.close();
    source = null;
  }

  document.addEventListener("visibilitychange", function () {
    if (document.hidden) {
      close();
    } else if (feed) {
      open();
      soon();
    }
  });

  if (every > 0) plan(every);
  open();

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
