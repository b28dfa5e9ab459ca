// The task form's result: polls the task's state until the worker has run it.
// A file of its own, not an inline <script>: the Content-Security-Policy runs no inline script.
"use strict";

(() => {
  const el = document.getElementById("result");
  if (!el || !el.dataset.statusUrl) {
    return;
  }

  async function poll() {
    let data;
    try {
      const reply = await fetch(el.dataset.statusUrl, { headers: { Accept: "application/json" } });
      if (!reply.ok) {
        setTimeout(poll, 2000); // the broker is away for a moment: ask again a little later
        return;
      }
      data = await reply.json();
    } catch {
      setTimeout(poll, 2000);
      return;
    }
    if (data.state === "SUCCESS") {
      el.textContent = data.result;
      return;
    }
    if (data.state === "FAILURE") {
      el.textContent = "failed";
      return;
    }
    setTimeout(poll, 500);
  }

  poll();
})();
