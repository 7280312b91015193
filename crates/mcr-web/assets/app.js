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
