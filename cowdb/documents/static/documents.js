// The history slider: fetch the text at the chosen revision (rendered and escaped by
// the server, tinted by author) into the page. No inline script: the CSP forbids it.
(function () {
  var slider = document.getElementById("slider");
  if (!slider) return;
  var revs = slider.getAttribute("data-revs").split(",");
  var authors = slider.getAttribute("data-authors").split("\n");
  var label = document.getElementById("slider-label");
  var view = document.getElementById("scrub-view");
  var base = slider.getAttribute("data-url");
  var timer = null, asked = 0;
  function show() {
    var i = parseInt(slider.value, 10);
    label.textContent = "revision " + revs[i] + " by " + authors[i];
    var n = ++asked;
    fetch(base + encodeURIComponent(revs[i]), {credentials: "same-origin"})
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (html === null || n !== asked) return;
        view.innerHTML = html;            // server-rendered with autoescape
        view.setAttribute("data-revision", revs[i]);
      });
  }
  slider.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(show, 60);
  });
})();
