// The task form's result: polls the task's state until the worker has run it.
// A file of its own, not an inline <script>: the Content-Security-Policy runs no inline script.
"use strict";

(() => {
  const el = document.getElementById("result");
  if (!el || !el.dataset.statusUrl) {
    return;
  }
  const count = (n, noun) => `${n} ${noun}${n === 1 ? "" : "s"}`;

  async function poll() {
    let data;
    try {
      const reply = await fetch(el.dataset.statusUrl, { headers: { Accept: "application/json" } });
      if (!reply.ok) {
        // The broker or the database is away for a moment (503): ask again a little later.
        setTimeout(poll, 2000);
        return;
      }
      data = await reply.json();
    } catch {
      setTimeout(poll, 2000);
      return;
    }
    el.dataset.state = data.state;
    if (data.state === "SUCCESS") {
      el.textContent = `${count(data.result.houses, "house")}, ${count(data.result.cats, "cat")}`;
      return;
    }
    if (data.state === "FAILURE") {
      el.textContent = `failed: ${data.error}`;
      return;
    }
    setTimeout(poll, 500);
  }

  poll();
})();
