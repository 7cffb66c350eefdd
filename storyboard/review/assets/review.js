"use strict";
(() => {
  const data = JSON.parse(document.getElementById("review-data").textContent);
  const player = document.getElementById("cut");
  const items = Array.from(document.querySelectorAll(".strip .item"));
  const playhead = document.querySelector(".strip .playhead");

  /* The strip: a click seeks the cut to the item's first frame. */
  for (const el of items) {
    el.addEventListener("click", () => {
      const item = data.items[Number(el.dataset.item)];
      if (!player || !item) return;
      player.currentTime = item.start;
      show(player.currentTime);
    });
  }

  function show(time) {
    if (!data.seconds) return;
    if (playhead) {
      playhead.style.left = `${Math.min(100, (100 * time) / data.seconds)}%`;
    }
    let current = -1;
    data.items.forEach((item, i) => {
      if (time >= item.start && time < item.start + item.seconds) current = i;
    });
    items.forEach((el, i) => el.classList.toggle("current", i === current));
  }

  if (player) {
    for (const name of ["timeupdate", "seeked", "loadedmetadata"]) {
      player.addEventListener(name, () => show(player.currentTime));
    }
  }

  /* One video plays at a time. */
  const videos = Array.from(document.querySelectorAll("video"));
  for (const video of videos) {
    video.addEventListener("play", () => {
      for (const other of videos) if (other !== video && !other.paused) other.pause();
    });
  }

  /* --serve: picking a take edits the storyboard, re-stitches the cut and rewrites this page. */
  if (!data.selectable) return;
  const token = new URLSearchParams(location.search).get("token") || "";
  for (const button of document.querySelectorAll("button.select")) {
    const error = button.parentElement.querySelector(".error");
    button.addEventListener("click", async () => {
      button.disabled = true;
      const label = button.textContent;
      button.textContent = "re-stitching the cut…";
      if (error) {
        error.hidden = true;
        error.textContent = "";
      }
      let message;
      try {
        const answer = await fetch("/api/select", {
          method: "POST",
          headers: { "Content-Type": "application/json", "X-Storyboard-Token": token },
          body: JSON.stringify({ shot: button.dataset.shot, take: Number(button.dataset.take) }),
        });
        if (answer.ok) {
          location.reload();
          return;
        }
        message = await answer.text();
        try {
          const parsed = JSON.parse(message);
          message = parsed.error || parsed.message || message;
          if (parsed.hint) message += ` (${parsed.hint})`;
        } catch (_) {
          /* not JSON: show the text as it is */
        }
        message = `could not select: ${message || answer.status + " " + answer.statusText}`;
      } catch (err) {
        message = `could not reach the review server: ${err}`;
      }
      button.textContent = label;
      button.disabled = false;
      if (error) {
        error.textContent = message;
        error.hidden = false;
      }
    });
  }
})();
