// Live job page: a snapshot on connect, then coalesced frames.
//
// Resume: every reply carries its database id and every message a `seq` (the highest reply id
// sent so far). The page keeps the highest seq it has; after a drop it reconnects with
// ?after=<seq> and gets only the replies it lacks. A reply with an id <= seq, or from a node
// already shown, is ignored, so nothing shows twice.
//
// Virtualized table: rows live in plain arrays; only the rows in view (plus OVERSCAN above and
// below) are in the DOM, between two spacers that keep the scroll height. Drawing happens at
// most once per animation frame, however many frames or scroll events arrive.
(function () {
  "use strict";
  const OVERSCAN = 30;            // rows drawn above and below the visible ones
  const OUTCOMES = ["all", "ok", "failed", "no_response"];

  const jobId = JSON.parse(document.getElementById("job-id").textContent);
  const el = (id) => document.getElementById(id);
  const viewport = el("replies-viewport");
  const table = el("replies");
  const tbody = table.querySelector("tbody");
  const spacerTop = el("replies-spacer-top");
  const spacerBottom = el("replies-spacer-bottom");
  const streamState = el("stream-state");

  // --- state -------------------------------------------------------------------------------
  const byIdentity = new Map();   // identity -> row, for replies
  let replies = [];               // rows of replies, sorted by identity when `sorted`
  let sorted = true;
  let noResponse = [];            // rows of nodes that never answered (known once finished)
  let noResponseFrom = null;      // the job's no_response list those rows were made from
  let counts = { ok: 0, failed: 0 };
  let seq = 0;
  let finished = false;
  let jobStatus = "";
  let outcome = "all";
  let query = "";
  let view = [];                  // the rows the filter and search let through, in order
  let viewDirty = true;
  let drawn = { first: -1, last: -1, view: null };
  let rowHeight = 29;             // px; measured on the first drawn row
  let measured = false;
  let frameRequested = false;
  let retryDelay = 500;

  function replyRow(reply) {
    const ok = reply.statuscode === 0;
    return {
      identity: reply.identity,
      key: reply.identity.toLowerCase(),
      outcome: ok ? "ok" : "failed",
      status: ok ? "OK" : "FAILED (" + reply.statuscode + ")",
      statusmsg: reply.statusmsg || "",
      data: reply.data,
      dataText: null,             // JSON text, made when the row is first drawn
    };
  }

  function noResponseRow(identity) {
    return {
      identity: identity, key: identity.toLowerCase(), outcome: "no_response",
      status: "NO RESPONSE", statusmsg: "", data: null, dataText: "",
    };
  }

  function addReply(reply) {
    if (typeof reply.id === "number" && reply.id <= seq) return;
    if (byIdentity.has(reply.identity)) return;
    const row = replyRow(reply);
    byIdentity.set(reply.identity, row);
    if (sorted && replies.length && replies[replies.length - 1].identity > row.identity) sorted = false;
    replies.push(row);
    counts[row.outcome] += 1;
    viewDirty = true;
  }

  function setNoResponse(identities) {
    if (noResponseFrom !== null && identities.length === noResponseFrom.length) return;
    noResponseFrom = identities;
    noResponse = identities.filter((id) => !byIdentity.has(id)).sort().map(noResponseRow);
    viewDirty = true;
  }

  // --- one message from the server ---------------------------------------------------------
  function apply(message) {
    let job, incoming;
    if (message.type === "job.snapshot") {
      job = message.job; incoming = message.job.replies || [];
    } else if (message.type === "job.frame") {
      job = message.job; incoming = message.replies || [];
    } else {
      return;
    }
    for (let i = 0; i < incoming.length; i++) addReply(incoming[i]);
    if (typeof message.seq === "number" && message.seq > seq) seq = message.seq;
    renderJob(job);
    requestDraw();
  }

  function text(id, value) { el(id).textContent = value; }

  function renderJob(job) {
    const status = el("job-status");
    status.textContent = job.status;
    status.className = "status status-" + job.status;
    for (const [key, value] of Object.entries(job.counts)) {
      const counter = el("count-" + key);
      if (!counter) continue;
      counter.textContent = value;
      counter.parentElement.toggleAttribute("data-zero", value === 0);
    }
    const progress = el("progress");
    const expected = job.counts.expected;
    progress.max = Math.max(expected, 1);
    progress.value = job.finished ? progress.max : Math.min(job.counts.replied, progress.max);
    text("progress-text", progressText(job));
    renderCountdown(job);
    const error = el("job-error");
    error.hidden = !job.error;
    error.textContent = job.error || "";
    finished = job.finished;
    jobStatus = job.status;
    // Nodes whose batch's wait ended without a reply: known while the job runs, batch by batch.
    const noResp = job.no_response || [];
    el("no-response").hidden = !noResp.length;
    text("no-response-list", noResp.join("  "));
    setNoResponse(noResp);
    const notSent = job.finished ? job.not_sent || [] : [];
    el("not-sent").hidden = !notSent.length;
    text("not-sent-list", notSent.join("  "));
    text("label-not_sent", job.finished ? "not sent" : "not sent yet");
    // A viewer who may not cancel (a manager, a colleague) never sees the button.
    el("cancel-form").hidden = job.finished || el("cancel-form").hasAttribute("data-forbidden");
    text("cancel-button", job.status === "pending_approval" ? "Withdraw job" : "Cancel job");
    el("rerun-failed").hidden = !(job.finished && job.counts.failed > 0);
    el("rerun-no-response").hidden = !(job.finished && noResp.length > 0);
    if (job.approval) renderApproval(job.approval);
    if (job.summaries) renderSummaries(job.summaries);
  }

  function progressText(job) {
    const c = job.counts;
    if (job.status === "pending_approval") return "waiting for approval: nothing is sent before";
    if (job.status === "queued") return "queued: a worker starts it shortly";
    if (!c.expected) return job.finished ? "" : "discovering…";
    let line = c.replied + " of " + c.expected + " replied (" + Math.floor(100 * c.replied / c.expected) + "%)";
    const p = job.progress || {};
    if (p.batches > 1) line += ", batch " + p.batches_sent + " of " + p.batches;
    return line;
  }
  // The wait for the current batch's replies, counting down. The server's clock is the
  // reference: each message carries its "now", so a skewed browser clock does not matter.
  let deadline = null;       // ms on this browser's clock
  let countdownTimer = null;
  function renderCountdown(job) {
    const p = job.progress || {};
    deadline = null;
    if (!job.finished && p.waiting_until && job.counts.waiting > 0) {
      const skew = Date.now() - Date.parse(p.now);
      deadline = Date.parse(p.waiting_until) + skew;
    }
    tick();
    if (deadline !== null && countdownTimer === null) countdownTimer = setInterval(tick, 250);
  }
  function tick() {
    const box = el("countdown");
    if (deadline === null) {
      box.hidden = true;
      if (countdownTimer !== null) { clearInterval(countdownTimer); countdownTimer = null; }
      return;
    }
    const left = Math.max(0, Math.ceil((deadline - Date.now()) / 1000));
    box.hidden = false;
    box.textContent = left > 0
      ? "waiting for " + el("count-waiting").textContent + " more: up to " + left + " s"
      : "wait over: counting the silent nodes as no response…";
  }
  function renderApproval(approval) {
    const card = el("approval");
    if (!card) return;
    const state = el("approval-state");
    state.textContent = approval.state;
    state.className = "status status-" + approval.state;
    const decision = el("approval-decision");
    if (approval.decided_by) {
      const verb = approval.state.charAt(0).toUpperCase() + approval.state.slice(1);
      const when = approval.decided_at ? " at " + approval.decided_at.replace("T", " ").slice(0, 19) : "";
      decision.textContent = verb + " by " + approval.decided_by + when +
        (approval.comment ? ": \u201c" + approval.comment + "\u201d" : "");
      decision.hidden = false;
    }
    const form = el("decide-form");
    if (form && approval.state !== "pending") form.hidden = true;
  }
  // --- the table ---------------------------------------------------------------------------
  function requestDraw() {
    if (frameRequested) return;
    frameRequested = true;
    requestAnimationFrame(() => { frameRequested = false; draw(); });
  }

  function computeView() {
    if (!sorted) {
      replies.sort((a, b) => (a.identity < b.identity ? -1 : a.identity > b.identity ? 1 : 0));
      sorted = true;
    }
    const rows = outcome === "no_response" ? noResponse
      : outcome === "all" ? replies.concat(noResponse)
      : replies.filter((row) => row.outcome === outcome);
    view = query ? rows.filter((row) => row.key.includes(query)) : rows;
    viewDirty = false;
    drawn.view = null;
    const all = replies.length + noResponse.length;
    for (const name of OUTCOMES) {
      const span = document.querySelector('#outcome-filter [data-count="' + name + '"]');
      span.textContent = name === "all" ? all : name === "no_response" ? noResponse.length : counts[name];
    }
    text("rows-shown", view.length === all ? all + " rows" : view.length + " of " + all + " rows");
    const empty = el("replies-empty");
    empty.hidden = view.length > 0;
    empty.textContent = all ? "No rows match." : (finished ? "No replies." : "No replies yet.");
  }

  function draw() {
    if (viewDirty) computeView();
    const headerHeight = table.tHead.offsetHeight;
    const top = Math.max(viewport.scrollTop - headerHeight, 0);
    const visible = Math.ceil(viewport.clientHeight / rowHeight) + 1;
    const first = Math.max(Math.floor(top / rowHeight) - OVERSCAN, 0);
    const last = Math.min(first + visible + 2 * OVERSCAN, view.length);
    if (drawn.view === view && drawn.first === first && drawn.last === last) return;
    const fragment = document.createDocumentFragment();
    for (let i = first; i < last; i++) fragment.appendChild(rowElement(view[i]));
    tbody.replaceChildren(fragment);
    spacerTop.style.height = first * rowHeight + "px";
    spacerBottom.style.height = (view.length - last) * rowHeight + "px";
    drawn = { first: first, last: last, view: view };
    if (!measured && tbody.rows.length) {
      measured = true;
      const height = tbody.rows[0].getBoundingClientRect().height;
      if (height > 0 && Math.abs(height - rowHeight) > 0.5) {
        rowHeight = height;
        drawn.view = null;
        draw();
      }
    }
  }

  function rowElement(row) {
    if (row.dataText === null) row.dataText = JSON.stringify(row.data);
    const tr = document.createElement("tr");
    tr.dataset.identity = row.identity;
    tr.dataset.outcome = row.outcome;
    const statusClass = row.outcome === "ok" ? "status-ok"
      : row.outcome === "failed" ? "status-failed" : "status-noresp";
    cell(tr, row.identity, "node");
    cell(tr, row.status, statusClass);
    cell(tr, row.statusmsg, "msg");
    cell(tr, row.dataText, "data");
    return tr;
  }

  function cell(tr, value, className) {
    const td = document.createElement("td");
    td.textContent = value;
    td.className = className;
    if (value && value.length > 24) td.title = value;  // cells are cut to one line
    tr.appendChild(td);
  }

  // --- summaries (the DDL's aggregates, like mco's summary) --------------------------------
  function renderSummaries(summaries) {
    const section = el("summaries");
    section.hidden = !summaries.length;
    const list = el("summary-list");
    list.replaceChildren();
    for (const summary of summaries) {
      const block = document.createElement("div");
      block.className = "summary";
      block.dataset.function = summary.function;
      block.dataset.output = summary.output;
      const title = document.createElement("h3");
      const label = { summary: "Summary of", boolean_summary: "Summary of",
                      average: "Average of", sum: "Sum of" }[summary.function] || summary.function;
      title.textContent = label + " " + summary.display_as;
      block.appendChild(title);
      if (summary.values) {
        const table = document.createElement("table");
        table.className = "summary-values";
        if (!summary.values.length) block.appendChild(note("no values"));
        for (const item of summary.values) {
          const tr = table.insertRow();
          const value = tr.insertCell();
          value.textContent = typeof item.value === "string" ? item.value : JSON.stringify(item.value);
          const n = tr.insertCell();
          n.className = "num";
          n.textContent = item.count;
        }
        block.appendChild(table);
      } else {
        const value = summary.value === null ? "no numeric values"
          : Number.isInteger(summary.value) ? String(summary.value) : summary.value.toFixed(2);
        const p = note(value + " (" + summary.count + " node" + (summary.count === 1 ? "" : "s") + ")");
        p.className = "summary-value";
        block.appendChild(p);
      }
      list.appendChild(block);
    }
  }

  function note(value) {
    const p = document.createElement("p");
    p.className = "muted";
    p.textContent = value;
    return p;
  }

  // --- controls ----------------------------------------------------------------------------
  el("outcome-filter").addEventListener("click", (event) => {
    const button = event.target.closest("button[data-outcome]");
    if (!button) return;
    outcome = button.dataset.outcome;
    for (const other of el("outcome-filter").querySelectorAll("button")) {
      other.setAttribute("aria-checked", String(other === button));
    }
    viewDirty = true;
    viewport.scrollTop = 0;
    requestDraw();
  });
  el("reply-search").addEventListener("input", (event) => {
    query = event.target.value.trim().toLowerCase();
    viewDirty = true;
    viewport.scrollTop = 0;
    requestDraw();
  });
  viewport.addEventListener("scroll", requestDraw, { passive: true });
  window.addEventListener("resize", requestDraw);

  // --- the stream --------------------------------------------------------------------------
  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const resume = seq > 0 ? "?after=" + seq : "";
    const socket = new WebSocket(scheme + location.host + "/ws/jobs/" + jobId + "/" + resume);
    socket.onopen = () => { streamState.textContent = liveText(); };
    socket.onmessage = (event) => {
      // The back-off starts over only once the server has answered (its snapshot): a server
      // that accepts the socket and then drops it is not hammered every half second.
      retryDelay = 500;
      apply(JSON.parse(event.data));
      streamState.textContent = finished ? "finished" : liveText();
    };
    socket.onclose = (event) => {
      if (event.code === 4401 || event.code === 4403) {
        streamState.textContent = "not allowed to watch this job (" + event.code + ")";
        return;
      }
      if (finished) return;
      streamState.textContent = "disconnected; reconnecting…";
      setTimeout(connect, retryDelay);
      retryDelay = Math.min(retryDelay * 2, 5000);
    };
  }

  function liveText() {
    return jobStatus === "pending_approval"
      ? "live: this page shows the decision when an approver makes it" : "live";
  }
  // For tests and measurements: feed messages and draw now instead of at the next frame.
  window.switchboardJobPage = {
    apply: apply,
    drawNow: draw,
    state: () => ({ seq: seq, rows: replies.length + noResponse.length, shown: view.length,
                    drawn: tbody.rows.length, rowHeight: rowHeight }),
  };
  connect();
})();
