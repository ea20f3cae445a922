// End to end in headless Chromium: the module in a real browser against a real server.
//
// Run by tests/clients/test_js_client.py, which starts the servers and a static page
// server and passes their addresses in HL_BROWSER_CONFIG (JSON):
//   { base, servers: { counter, chat, probe, refused, tls? }, screenshot }
// Any server that speaks hl/2 with the same apps can be pointed at.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

const CONFIG = process.env.HL_BROWSER_CONFIG ? JSON.parse(process.env.HL_BROWSER_CONFIG) : null;
const skip = CONFIG ? false : "HL_BROWSER_CONFIG is not set (run through tests/clients/test_js_client.py)";

let browser;
let page;
const consoleLines = [];

before(async () => {
  if (!CONFIG) return;
  const { chromium } = await import("playwright-core");
  browser = await chromium.launch({
    executablePath: process.env.HL_CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--ignore-certificate-errors",
    ],
  });
  page = await browser.newPage();
  page.on("console", (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => consoleLines.push(`pageerror: ${e.message}`));
  await page.goto(`${CONFIG.base}/clients/js/browser-test/page.html`);
  await page.waitForFunction(() => document.getElementById("ready").textContent === "ready");
});

after(async () => {
  await browser?.close();
});

function run(fn, arg) {
  return page.evaluate(fn, arg).catch((e) => {
    throw new Error(`${e.message}\nbrowser console:\n${consoleLines.join("\n")}`);
  });
}

test("counter: calls, the state mirror and events", { skip }, async () => {
  const r = await run(async (url) => {
    const c = await hl.Client.connect(url, await schema("counter"));
    const events = [];
    const changes = [];
    c.onEvent((e) => events.push(e.value));
    c.onState((s, changed) => changes.push(changed));
    const protocol = c.ws.protocol;
    const before = c.state.counter;
    await c.rpc.newCounter(); // camelCase alias of new_counter
    const topic = c.state.topic;
    await c.rpc.increment(5);
    const afterIncrement = c.state.counter; // the state change came before the response
    const got = await c.rpc.get();
    await c.call("decrement", 2);
    const it = c.events();
    await c.rpc.increment(10);
    const next = (await it.next()).value;
    await until(() => events.length >= 3);
    await c.close();
    return plain({
      protocol, before, afterIncrement, got, final: c.state.counter, events, changes,
      topicLen: topic.inner.length, topicIsString: topic.is_string,
      next: next.value, nextTopicMatches: hl.topicEquals(next.topic, topic), open: c.isOpen,
    });
  }, CONFIG.servers.counter);
  assert.equal(r.protocol, "hl.2"); // the browser-safe spelling of hl/2
  assert.equal(r.before, 0);
  assert.equal(r.topicLen, 1);
  assert.equal(r.topicIsString, false);
  assert.equal(r.afterIncrement, 5);
  assert.equal(r.got, 5);
  assert.equal(r.final, 13);
  assert.deepEqual(r.events, [
    { Incremented: { to: 5, from: 0 } },
    { Decremented: { to: 3, from: 5 } },
    { Incremented: { to: 13, from: 3 } },
  ]);
  assert.deepEqual(r.next, { Incremented: { to: 13, from: 3 } });
  assert.ok(r.nextTopicMatches);
  // new_counter changed only the topic (the counter was 0 already); increment the counter
  assert.deepEqual(r.changes.slice(0, 2), [["topic"], ["counter"]]);
  assert.equal(r.open, false);
});

test("256 calls in flight at once; the 257th is TooManyCallsInFlight", { skip }, async () => {
  const r = await run(async (url) => {
    const c = await hl.Client.connect(url, await schema("counter"));
    const incs = [];
    for (let i = 0; i < 256; i++) incs.push(c.rpc.increment(1));
    const extra = await c.rpc.get().then(() => "resolved", (e) => e.name);
    const sent = c.inFlight;
    await Promise.all(incs);
    const gets = [];
    for (let i = 0; i < 256; i++) gets.push(c.rpc.get());
    const values = await Promise.all(gets);
    const after = await c.rpc.get();
    const state = c.state.counter;
    await c.close();
    return { extra, sent, values: [...new Set(values)], after, state, inFlight: c.inFlight };
  }, CONFIG.servers.counter);
  assert.equal(r.extra, "TooManyCallsInFlight");
  assert.equal(r.sent, 256);
  assert.deepEqual(r.values, [256]);
  assert.equal(r.after, 256);
  assert.equal(r.state, 256);
  assert.equal(r.inFlight, 0);
});

test("probe: every codec type crosses the wire both ways; typed errors", { skip }, async () => {
  const r = await run(async (url) => {
    const s = await schema("probe");
    const c = await hl.Client.connect(url, s);
    const sample = await c.rpc.sample();
    const accepted = await c.rpc.check(sample);
    const echoed = await c.rpc.echo(sample);
    const same = JSON.stringify(plain(echoed)) === JSON.stringify(plain(sample));
    const err = (p) => p.then(() => "resolved", (e) => `${e.name}:${e instanceof hl.RpcError}`);
    const errors = {
      fail: await err(c.rpc.fail()),
      badReturn: await err(c.rpc.badReturn()),
      refuse: await err(c.rpc.refuse()),
      badArgument: await err(c.rpc.slow(-1)),
      timeout: await err(c.callWith("slow", [300], { timeout: 50 })),
    };
    // a method the server does not have: its RpcCall tag is unknown there
    const extended = structuredClone(s);
    extended.methods.push({ name: "missing", tag: s.methods.length, variant: "Missing", args: [], returns: "unit" });
    const c2 = await hl.Client.connect(url, extended);
    errors.unknownMethod = await err(c2.rpc.missing());
    const pending = c2.rpc.slow(3000);
    c2.close();
    errors.closed = await err(pending);
    errors.afterClose = await err(c2.rpc.slow(1));
    const stillWorks = await c.rpc.slow(1);
    await c.close();
    return plain({
      accepted, same, errors, stillWorks,
      kinds: {
        u64: typeof sample.big, i128: typeof sample.huge, bytes: sample.raw instanceof Uint8Array,
        map: sample.by_id instanceof Map, mapSize: sample.by_id.size, level: sample.level,
        shape: Object.keys(sample.shape)[0], result: Object.keys(sample.outcome)[0],
      },
      sample,
    });
  }, CONFIG.servers.probe);
  assert.equal(r.accepted, true, "Python decoded the JS archive to the value it sent");
  assert.equal(r.same, true, "echo came back equal");
  assert.deepEqual(r.errors, {
    fail: "HandlerPanicked:true",
    badReturn: "ServerEncodeError:true",
    refuse: "ServerDecodeError:true",
    badArgument: "ClientEncodeError:true",
    timeout: "CallTimeout:true",
    unknownMethod: "ServerDecodeError:true",
    closed: "ClientNotConnected:true",
    afterClose: "ClientNotConnected:true",
  });
  assert.equal(r.stillWorks, 1);
  assert.deepEqual(r.kinds, {
    u64: "bigint", i128: "bigint", bytes: true, map: true, mapSize: 40,
    level: "High", shape: "Rect", result: "Err",
  });
});

test("chat: two clients, string topics, events and history", { skip }, async () => {
  const r = await run(async (url) => {
    const s = await schema("chat");
    const alice = await hl.Client.connect(url, s);
    const bob = await hl.Client.connect(url, s);
    const seen = { alice: [], bob: [] };
    alice.onEvent((e) => seen.alice.push([hl.topicToString(e.topic), e.value]));
    bob.onEvent((e) => seen.bob.push([hl.topicToString(e.topic), e.value]));
    const before = await alice.rpc.join("browser", "alice");
    await bob.rpc.join("browser", "bob");
    const seq1 = await bob.rpc.sendMessage("hello from bob");
    const seq2 = await alice.rpc.sendMessage("hi bob");
    await until(() => seen.alice.length >= 4 && seen.bob.length >= 3);
    const history = await bob.rpc.history(10);
    const state = { user: alice.state.user, room: hl.topicToString(alice.state.room), isString: alice.state.room.is_string, sent: alice.state.sent };
    await bob.rpc.leave();
    await until(() => seen.alice.length >= 5 && seen.bob.length >= 4);
    const bobRoom = bob.state.room.inner.length;
    await alice.close();
    await bob.close();
    return plain({ before, seq1, seq2, history, seen, state, bobRoom });
  }, CONFIG.servers.chat);
  assert.equal(r.before, 0);
  assert.deepEqual(r.seq1, { bigint: "1" });
  assert.deepEqual(r.seq2, { bigint: "2" });
  assert.deepEqual(r.history, [
    { from: "bob", text: "hello from bob", seq: { bigint: "1" } },
    { from: "alice", text: "hi bob", seq: { bigint: "2" } },
  ]);
  assert.deepEqual(r.seen.alice, [
    ["chat-browser", { Joined: { user: "alice" } }],
    ["chat-browser", { Joined: { user: "bob" } }],
    ["chat-browser", { Said: { message: { from: "bob", text: "hello from bob", seq: { bigint: "1" } } } }],
    ["chat-browser", { Said: { message: { from: "alice", text: "hi bob", seq: { bigint: "2" } } } }],
    ["chat-browser", { Left: { user: "bob" } }],
  ]);
  // bob's own Left reaches him: the handler emits it before it unsubscribes
  assert.deepEqual(r.seen.bob.map((x) => Object.keys(x[1])[0]), ["Joined", "Said", "Said", "Left"]);
  assert.deepEqual(r.state, { user: "alice", room: "chat-browser", isString: true, sent: 1 });
  assert.equal(r.bobRoom, 0);
});

test("a refused upgrade (origin not allowed) is ConnectionRefused", { skip }, async () => {
  const r = await run(async (url) => {
    try {
      await hl.Client.connect(url, await schema("counter"));
      return "connected";
    } catch (e) {
      return `${e.name}:${e instanceof hl.ConnectionRefused}`;
    }
  }, CONFIG.servers.refused);
  assert.equal(r, "ConnectionRefused:true");
  const closed = await run(async () => {
    // nothing listens here: refused at TCP level
    try {
      await hl.Client.connect("ws://127.0.0.1:9/", await schema("counter"));
      return "connected";
    } catch (e) {
      return e.name;
    }
  });
  assert.equal(closed, "ConnectionRefused");
});

test("TLS: wss to a self-signed server", { skip: skip || (!CONFIG.servers.tls && "no TLS server configured") }, async () => {
  const r = await run(async (url) => {
    const c = await hl.Client.connect(url, await schema("counter"));
    await c.rpc.increment(3);
    const got = await c.rpc.get();
    await c.close();
    return { got, secure: c.url.startsWith("wss:") };
  }, CONFIG.servers.tls);
  assert.deepEqual(r, { got: 3, secure: true });
});

test("the demo page: a chat exchange, then a screenshot", { skip }, async () => {
  const demo = await browser.newPage({ viewport: { width: 900, height: 560 } });
  const errors = [];
  demo.on("pageerror", (e) => errors.push(e.message));
  const server = CONFIG.servers.chat;
  await demo.goto(`${CONFIG.base}/examples/browser/index.html?server=${encodeURIComponent(server)}`);
  await demo.waitForSelector("#join-button:not([disabled])", { timeout: 10000 });
  await demo.fill("#room", "demo");
  await demo.fill("#user", "carol");
  await demo.click("#join-button");
  await demo.waitForSelector("#send-button:not([disabled])");
  // a second participant, from the test page
  await run(async (url) => {
    const dave = await hl.Client.connect(url, await schema("chat"));
    await dave.rpc.join("demo", "dave");
    await dave.rpc.sendMessage("hi carol, this is dave");
    window.dave = dave;
  }, server);
  await demo.fill("#text", "hello dave!");
  await demo.click("#send-button");
  await demo.waitForFunction(() => document.querySelectorAll("#messages li").length >= 4);
  await demo.waitForFunction(() => /sent\s*1/.test(document.getElementById("state").textContent));
  const text = await demo.textContent("#messages");
  assert.match(text, /dave joined/);
  assert.match(text, /dave: hi carol, this is dave/);
  assert.match(text, /carol: hello dave!/);
  assert.match(await demo.textContent("#status"), /connected to ws/);
  assert.match(await demo.textContent("#state"), /chat-demo/);
  await demo.screenshot({ path: CONFIG.screenshot });
  await run(async () => window.dave.close());
  await demo.close();
  assert.deepEqual(errors, []);
});
