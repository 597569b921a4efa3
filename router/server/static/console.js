// vapi-router console: a little progressive enhancement; every page works without it.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  // Filters apply as soon as a choice changes.
  document.querySelectorAll("form.autosubmit select").forEach(function (select) {
    select.addEventListener("change", function () { select.form.submit(); });
  });
  // "now" fills the simulate form's time with the browser's current wall-clock minute.
  var now = document.getElementById("now");
  if (now) {
    now.addEventListener("click", function () {
      var d = new Date();
      var pad = function (n) { return String(n).padStart(2, "0"); };
      document.getElementById("at").value = d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" +
        pad(d.getDate()) + "T" + pad(d.getHours()) + ":" + pad(d.getMinutes());
    });
  }
  document.documentElement.classList.add("js");
});
