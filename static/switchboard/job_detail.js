// Live job page: a snapshot on connect, then coalesced frames; rows are keyed by node identity
// so a reply seen in both the snapshot and a frame shows once.
(function () {
  "use strict";
  const jobId = JSON.parse(document.getElementById("job-id").textContent);
  const tbody = document.querySelector("#replies tbody");
  const streamState = document.getElementById("stream-state");
  const rows = new Map();
  const order = [];  // identities in table order
  let finished = false;
  let retryDelay = 500;

  function text(id, value) { document.getElementById(id).textContent = value; }

  function renderJob(job) {
    const status = document.getElementById("job-status");
    status.textContent = job.status;
    status.className = "status status-" + job.status;
    for (const [key, value] of Object.entries(job.counts)) {
      const counter = document.getElementById("count-" + key);
      counter.textContent = value;
      counter.parentElement.toggleAttribute("data-zero", value === 0);
    }
    const progress = document.getElementById("progress");
    progress.max = Math.max(job.counts.expected, 1);
    progress.value = job.finished ? progress.max : job.counts.replied;
    const error = document.getElementById("job-error");
    error.hidden = !job.error;
    error.textContent = job.error || "";
    const noResponse = document.getElementById("no-response");
    noResponse.hidden = !(job.finished && job.no_response.length);
    text("no-response-list", job.no_response.join("  "));
    finished = job.finished;
  }

  function addReply(reply) {
    if (rows.has(reply.identity)) return;
    const tr = document.createElement("tr");
    tr.dataset.identity = reply.identity;
    const ok = reply.statuscode === 0;
    const cells = [
      reply.identity,
      ok ? "OK" : "FAILED (" + reply.statuscode + ")",
      reply.statusmsg,
      JSON.stringify(reply.data),
    ];
    cells.forEach((value, i) => {
      const td = document.createElement("td");
      td.textContent = value;
      if (i === 1) td.className = ok ? "status-ok" : "status-failed";
      if (i === 3) td.className = "data";
      tr.appendChild(td);
    });
    rows.set(reply.identity, tr);
    // Sorted by identity, as the snapshot is, so a reload shows the same order.
    let low = 0, high = order.length;
    while (low < high) {
      const mid = (low + high) >> 1;
      if (order[mid] < reply.identity) low = mid + 1; else high = mid;
    }
    tbody.insertBefore(tr, low < order.length ? rows.get(order[low]) : null);
    order.splice(low, 0, reply.identity);
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const socket = new WebSocket(scheme + location.host + "/ws/jobs/" + jobId + "/");
    socket.onopen = () => { streamState.textContent = "live"; retryDelay = 500; };
    socket.onmessage = (event) => {
      const message = JSON.parse(event.data);
      if (message.type === "job.snapshot") {
        message.job.replies.forEach(addReply);
        renderJob(message.job);
      } else if (message.type === "job.frame") {
        message.replies.forEach(addReply);
        renderJob(message.job);
      }
      if (finished) streamState.textContent = "finished";
    };
    socket.onclose = (event) => {
      if (event.code === 4401 || event.code === 4403) {
        streamState.textContent = "not allowed to watch this job (" + event.code + ")";
        return;
      }
      if (finished) return;
      streamState.textContent = "disconnected; reconnecting…";
      setTimeout(connect, retryDelay);
      retryDelay = Math.min(retryDelay * 2, 10000);
    };
  }
  connect();
})();
