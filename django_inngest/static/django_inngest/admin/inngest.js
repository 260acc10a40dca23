// django-inngest admin: confirm before destructive buttons, and refresh a run page until it ends.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.dataset.confirm)) {
        event.preventDefault();
      }
    });
  });

  const note = document.querySelector("[data-refresh-seconds]");
  if (!note) {
    return;
  }
  const seconds = Number(note.dataset.refreshSeconds) || 5;
  const box = document.getElementById("inngest-auto-refresh");
  const key = "django_inngest.autoRefresh";
  if (box) {
    box.checked = window.sessionStorage.getItem(key) !== "off";
    box.addEventListener("change", function () {
      window.sessionStorage.setItem(key, box.checked ? "on" : "off");
    });
  }
  window.setInterval(function () {
    // Reading an expanded step or selecting text must not be interrupted by a reload.
    if ((box && !box.checked) || document.querySelector("details[open]")) {
      return;
    }
    if (String(window.getSelection() || "") !== "") {
      return;
    }
    window.location.reload();
  }, seconds * 1000);
});
