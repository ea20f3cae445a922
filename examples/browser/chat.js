// The chat app (hardlight_apps.chat) in the browser, with the module
// from clients/js. The server is ?server=ws://host:port/ (default: this host, port 8765).
import { Client, topicToString } from "../../clients/js/src/index.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const server = params.get("server") || `ws://${location.hostname || "127.0.0.1"}:8765/`;

function status(text, error = false) {
  $("status").textContent = text;
  $("status").style.color = error ? "#ff9a9a" : "";
}

function line(html, cls = "") {
  const li = document.createElement("li");
  if (cls) li.className = cls;
  li.append(...html);
  $("messages").append(li);
}

function said({ from, text }) {
  const who = document.createElement("b");
  who.textContent = from;
  line([who, `: ${text}`]);
}

function renderState(state) {
  const dl = $("state");
  dl.replaceChildren();
  for (const [name, value] of Object.entries(state)) {
    const dt = document.createElement("dt");
    dt.textContent = name;
    const dd = document.createElement("dd");
    dd.textContent = name === "room" ? topicToString(value) || "—" : String(value);
    dl.append(dt, dd);
  }
}

async function main() {
  const schema = await (await fetch("./chat.schema.json")).json();
  status(`connecting to ${server}…`);
  let client;
  try {
    client = await Client.connect(server, schema);
  } catch (e) {
    status(`${e.name}: ${e.message}`, true);
    return;
  }
  window.chatClient = client;
  status(`connected to ${server} (${client.ws.protocol})`);
  renderState(client.state);
  client.onState(renderState);
  client.onEvent(({ value }) => {
    if (!value) return;
    if (value.Said) said(value.Said.message);
    else if (value.Joined) line([`${value.Joined.user} joined`], "notice");
    else if (value.Left) line([`${value.Left.user} left`], "notice");
  });
  client.onClose(({ code, reason }) => status(`disconnected (${code} ${reason})`, true));
  $("join-button").disabled = false;

  $("join").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    $("messages").replaceChildren();
    try {
      const count = await client.rpc.join($("room").value, $("user").value);
      if (count) {
        // the room's earlier messages first, then what arrived while joining
        const live = [...$("messages").children];
        $("messages").replaceChildren();
        for (const m of await client.rpc.history(50)) said(m);
        $("messages").append(...live);
      }
      $("send-button").disabled = false;
      $("text").focus();
    } catch (e) {
      status(`${e.name}: ${e.message}`, true);
    }
  });

  $("say").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const text = $("text").value;
    $("text").value = "";
    try {
      await client.rpc.sendMessage(text);
    } catch (e) {
      status(`${e.name}: ${e.message}`, true);
    }
  });
}

main();
