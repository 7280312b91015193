// The copy buttons beside pull references. Served from 'self' (the page's
// Content-Security-Policy allows no inline script); without JavaScript the
// read-only input beside each button can be selected and copied by hand.
document.addEventListener("click", function (event) {
  var button = event.target.closest("button.copy");
  if (!button) return;
  var text = button.getAttribute("data-copy");
  var done = function () {
    button.textContent = "Copied";
    setTimeout(function () { button.textContent = "Copy"; }, 1500);
  };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(text).then(done);
  } else {
    var input = button.parentElement.querySelector("input.pull-ref");
    if (input) { input.select(); document.execCommand("copy"); done(); }
  }
});

// An htmx request answered with an error (mcrsrv down, a rule gone, a
// refused form) shows the error page in place of the page, with its way
// back, instead of leaving the old content as if nothing happened.
document.addEventListener("htmx:beforeSwap", function (event) {
  if (event.detail.xhr.status >= 400) {
    event.detail.shouldSwap = true;
    event.detail.isError = false;
    event.detail.target = document.body;
    event.detail.swapOverride = "innerHTML";
  }
});
// The UI itself could not be reached: say so rather than nothing.
document.addEventListener("htmx:sendError", function () {
  window.alert("The web UI could not be reached; check that mcr-web is running and reload the page.");
});
