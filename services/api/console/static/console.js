// The console's own script (no library): live task progress over server-sent events, and
// confirmation of destructive forms. Every page works without it; it only adds liveness.
"use strict";

function text(tag, value, cls) {
  const node = document.createElement(tag);
  node.textContent = value;
  if (cls) node.className = cls;
  return node;
}

function followTask(live) {
  const bar = document.getElementById("bar");
  const pct = document.getElementById("pct");
  const current = document.getElementById("current");
  const steps = document.getElementById("steps");
  const status = document.getElementById("status");
  let lastStep = null;
  const source = new EventSource(live.dataset.events);
  source.addEventListener("progress", (message) => {
    const event = JSON.parse(message.data);
    if (event.pct !== null && event.pct !== undefined) {
      bar.value = event.pct;
      pct.textContent = event.pct + "%";
    }
    current.textContent = event.step + (event.message ? ": " + event.message : "");
    if (event.step !== lastStep) {
      lastStep = event.step;
      const item = document.createElement("li");
      item.appendChild(text("time", event.at));
      item.appendChild(text("strong", event.step));
      if (event.message) item.appendChild(text("span", " " + event.message));
      steps.appendChild(item);
    }
    if (event.error) steps.appendChild(text("li", event.error, "error"));
  });
  source.addEventListener("run", (message) => showRun(JSON.parse(message.data)));
  source.addEventListener("status", (message) => {
    const data = JSON.parse(message.data);
    status.textContent = data.status;
    status.className = "badge s-" + data.status;
    live.dataset.status = data.status;
  });
  source.addEventListener("end", (message) => {
    source.close();
    const data = JSON.parse(message.data);
    live.dataset.ended = data.status;
    // the result and the buttons are server-rendered: show the final page once
    if (live.dataset.terminal !== "yes") window.location.reload();
  });
}

function showRun(run) {
  // an agent run recorded while the page is open: its step, agent, cost and tool calls
  const list = document.getElementById("activity");
  if (!list || list.querySelector('[data-run="' + run.id + '"]')) return;
  const empty = document.getElementById("no-runs");
  if (empty) empty.remove();
  const item = document.createElement("li");
  item.className = "run";
  item.dataset.run = run.id;
  const head = document.createElement("p");
  head.append(text("time", run.at), " ", text("strong", run.step), " · " + run.agent + " ",
    text("span", run.status, "badge s-" + run.status),
    text("span", " " + run.seconds + " s · " + run.tokens + " tokens · $" + run.cost, "hint"));
  item.appendChild(head);
  if (run.tools.length) {
    const tools = document.createElement("ul");
    tools.className = "tools";
    for (const tool of run.tools) {
      const line = document.createElement("li");
      line.append(text("code", tool.name), " ", text("span", tool.target, "mono"), " ",
        text("span", tool.outcome, "hint"));
      tools.appendChild(line);
    }
    item.appendChild(tools);
  }
  if (run.error) item.appendChild(text("pre", run.error, "error"));
  list.appendChild(item);
}

function showMessage(chat, message) {
  let node = document.getElementById("msg-" + message.id);
  if (!node) {
    node = document.createElement("div");
    node.id = "msg-" + message.id;
    node.dataset.id = message.id;
    node.className = "msg from-" + message.from;
    chat.appendChild(node);
  }
  node.replaceChildren(text("pre", message.text));
  const pct = /\] (\d+)%/.exec(message.text); // the chat's text progress bar: [███░░] 60%
  if (pct) {
    const bar = document.createElement("progress");
    bar.max = 100;
    bar.value = Number(pct[1]);
    bar.setAttribute("aria-label", "Task progress");
    node.appendChild(bar);
  }
  const empty = document.getElementById("chat-empty");
  if (empty) empty.remove();
  node.scrollIntoView({ block: "nearest" });
}

function followChat(chat) {
  for (const node of chat.querySelectorAll(".msg")) {
    showMessage(chat, { id: node.dataset.id, text: node.textContent, from: node.className.split("from-")[1] });
  }
  const source = new EventSource(chat.dataset.events);
  source.addEventListener("message", (message) => showMessage(chat, JSON.parse(message.data)));
}

document.addEventListener("DOMContentLoaded", () => {
  const chat = document.getElementById("chat");
  if (chat && chat.dataset.events) followChat(chat);
  const live = document.getElementById("live");
  if (live && live.dataset.events) followTask(live);
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }
});
