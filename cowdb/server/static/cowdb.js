// Live timeline: follow the commit stream and redraw the timeline from the server
// (which escapes everything), keeping the page's place. No build step, no framework.
(function () {
  var el = document.getElementById("timeline");
  if (!el || !window.EventSource) return;
  var status = document.getElementById("live");
  var src = new EventSource("/api/v1/events");
  var pending = false;
  function refresh() {
    pending = false;
    fetch(el.getAttribute("data-fragment"), {credentials: "same-origin"})
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (html === null) return;
        el.innerHTML = html;
        el.setAttribute("data-head", String(el.querySelector("[data-version]") ?
          el.querySelector("[data-version]").getAttribute("data-version") : "0"));
      });
  }
  src.addEventListener("commit", function (e) {
    if (status) status.textContent = "live · version " + e.lastEventId;
    if (!pending) { pending = true; setTimeout(refresh, 150); }
  });
  src.onopen = function () { if (status) status.textContent = "live"; };
  src.onerror = function () { if (status) status.textContent = "reconnecting…"; };
})();
