// digest: the live progress bar of a job's page. It polls the JSON API (same origin, the
// session cookie goes along) and fills in the report when the job is done. No inline script
// anywhere: the Content-Security-Policy forbids it.
"use strict";

(function () {
  const job = document.getElementById("job");
  if (!job) {
    return;
  }
  const id = job.dataset.jobId;
  const text = (elementId, value) => {
    const el = document.getElementById(elementId);
    if (el) {
      el.textContent = value;
    }
  };
  const human = (n) => {
    const units = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let value = n;
    let unit = 0;
    while (value >= 1024 && unit + 1 < units.length) {
      value /= 1024;
      unit += 1;
    }
    return unit === 0 ? `${n} bytes` : `${value.toFixed(1)} ${units[unit]}`;
  };

  function show(data) {
    const j = data.job;
    job.dataset.state = j.state;
    text("state", j.state);
    const state = document.getElementById("state");
    if (state) {
      state.className = `state-${j.state}`;
    }
    text("attempts", String(j.attempts));
    const bar = document.getElementById("progress");
    if (j.bytes_total) {
      bar.max = j.bytes_total;
      bar.value = j.bytes_done;
      text("progress-text", `${human(j.bytes_done)} of ${human(j.bytes_total)}`);
    } else {
      bar.removeAttribute("value");
      text("progress-text", `${human(j.bytes_done)}`);
    }
    const error = document.getElementById("error");
    error.hidden = !j.error;
    text("error", j.error || "");
    if (data.report) {
      const r = data.report;
      bar.max = 1;
      bar.value = 1;
      text("report-size", `${r.size} bytes (${human(r.size)})`);
      text("report-sha256", r.sha256);
      text("report-blake3", r.blake3);
      text("report-type", r.description);
      text("report-mime", r.mime);
      text("report-lines", r.text_lines === null ? "not text" : String(r.text_lines));
      text("report-encoding", r.text_encoding === null ? "not text" : r.text_encoding);
      document.getElementById("report").hidden = false;
    }
    return j.state === "done" || j.state === "failed";
  }

  let delay = 500;
  async function poll() {
    try {
      const response = await fetch(`/api/jobs/${encodeURIComponent(id)}`, {
        headers: { Accept: "application/json" },
        credentials: "same-origin",
      });
      if (response.ok && show(await response.json())) {
        return;
      }
      if (response.status === 401 || response.status === 404) {
        // Signed out (perhaps in another tab), or the job is gone: asking again won't help.
        const error = document.getElementById("error");
        error.hidden = false;
        text(
          "error",
          response.status === 401
            ? "Signed out: sign in again to follow this job."
            : "This job no longer exists.",
        );
        return;
      }
      delay = 500;
    } catch (_) {
      // A restarting formation may refuse a request: try again, a little later each time.
      delay = Math.min(delay * 2, 5000);
    }
    setTimeout(poll, delay);
  }

  if (job.dataset.state !== "done" && job.dataset.state !== "failed") {
    setTimeout(poll, delay);
  }
})();
