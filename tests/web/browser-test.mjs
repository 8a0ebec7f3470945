#!/usr/bin/env node
// The demo page in a real browser: Debian's chromium, headless, driven by playwright-core,
// against a gateway that serves the page: a running baton-gateway given by --url, or (by
// default) mock-gateway.mjs, started in this process on a free loopback port. docs/web.md.
//
//   node browser-test.mjs [--url http://HOST:PORT] [--clock URL] [--web-dir DIR] [--out DIR]
//        [--scenario FILE] [--api /api/chat] [--only a,b] [--skip a,b] [--chromium PATH]
//        [--timeout-ms 60000] [--verbose]
//
//   --url       the gateway's base URL (GET / is the page); env BATON_GATEWAY_URL. Without
//               either, the mock gateway serves the page from --web-dir
//   --clock     POST {"advance_ms": N} here releases held answers: fake-llm's /__fake/clock
//               behind a real gateway; env BATON_CLOCK_URL (default: URL/__mock/clock, the mock's)
//   --web-dir   the built page the mock serves; env BATON_WEB_DIR; default: build.mjs of
//               tasks/web builds it into a temporary directory
//   --out       the screenshots (one per scenario at least) and the browser's log; on failure
//               also the page's HTML (default: baton-browser-test-out in the system's temp
//               dir; an earlier run's files there are replaced)
//   --scenario  prompts and expected answers (default: scenario.json beside this file)
//
// Scenarios, in order: headStart (a message answered with step-1 text, a tool call and its
// result, then step-2 text, in one assistant message), second (a second turn, with reasoning),
// reload (a reload mid-answer resumes it: no text twice, none missing), stop (the stop button
// ends the turn in the gateway too), twoTabs (a second tab on the chat streams the answer the
// first asked for), approval (approve a tool call, reload while the answer goes on; agent
// "files", a chat of its own).
// Every wait is on the page's DOM or on a request; the answers that must be caught mid-way are
// held by the script clock, never by timing. Exit 0 when all pass, 1 on the first failure,
// 2 on bad arguments. Run by `node --test` too (its name matches), against the mock.
import { chromium } from 'playwright-core';
import { spawnSync } from 'node:child_process';
import { access, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isDeepStrictEqual, parseArgs } from 'node:util';
import { checkSse } from './lib/sse-check.mjs';
import { createMockGateway } from './mock-gateway.mjs';

const here = dirname(fileURLToPath(import.meta.url));

// The flags this machine kind's Chromium needs (no sandbox as root; no network but loopback).
export const CHROMIUM_ARGS = [
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-dev-shm-usage',
];
export const SCENARIOS = ['headStart', 'second', 'reload', 'stop', 'twoTabs', 'approval'];

class TestFailure extends Error {}
// What a stop from outside (SIGTERM, SIGINT) must undo before the process ends.
const onStop = new Set();
function check(condition, message) {
  if (!condition) throw new TestFailure(message);
}
const show = (value) => JSON.stringify(value, null, 1).replace(/\n\s*/g, ' ');

// ---- what the page shows -----------------------------------------------------------------

// Runs in the page: the chat as the page shows it, read from its DOM contract (src/render.js).
function readPage() {
  const root = document.querySelector('#chat');
  const json = (el) => {
    if (!el) return undefined;
    try {
      return JSON.parse(el.textContent);
    } catch {
      return el.textContent;
    }
  };
  const messages = [...document.querySelectorAll('#messages > li')].map((li) => ({
    id: li.dataset.messageId,
    role: li.dataset.role,
    parts: [...li.querySelectorAll(':scope > .parts > [data-part]')].map((el) => {
      const kind = el.dataset.part;
      if (kind === 'text') return { kind, text: el.textContent };
      if (kind === 'reasoning') return { kind, text: el.querySelector('.reasoning-text')?.textContent };
      if (kind === 'tool') {
        const part = { kind, name: el.dataset.toolName, state: el.dataset.state, input: json(el.querySelector('[data-field="input"]')) };
        const output = el.querySelector('[data-field="output"]');
        if (output) part.output = json(output);
        if (el.querySelector('[data-action="approve"]')) part.approvable = true;
        return part;
      }
      return { kind };
    }),
    timings: [...li.querySelectorAll('[data-timing]')].map((el) => el.dataset.timing),
  }));
  const error = document.querySelector('#error');
  return {
    status: root?.dataset.chatStatus,
    messages,
    error: error && !error.hidden ? error.textContent : null,
    url: location.href,
  };
}

// The parts a test compares: text, reasoning, tools and step breaks (data- parts are left out).
function comparable(message) {
  return message.parts
    .filter((part) => ['text', 'reasoning', 'tool', 'step'].includes(part.kind))
    .map(({ approvable, state, ...part }) => part);
}

// The parts an answer shows, from the scenario: all of it, or (upTo) its text before a hold.
function expectedParts(answer, { upToHold = false, approved = undefined } = {}) {
  const parts = [];
  const steps = approved === false ? [answer.steps[0], ...(answer.deniedSteps ?? [])] : answer.steps;
  for (const [index, step] of steps.entries()) {
    if (index > 0) parts.push({ kind: 'step' });
    if (step.reasoning !== undefined) parts.push({ kind: 'reasoning', text: step.reasoning });
    if (step.text !== undefined) {
      const pieces = Array.isArray(step.text) ? step.text : [step.text];
      const held = pieces.findIndex((piece) => typeof piece === 'object');
      if (upToHold && held >= 0) {
        parts.push({ kind: 'text', text: pieces.slice(0, held).join('') });
        return parts;
      }
      parts.push({ kind: 'text', text: pieces.filter((piece) => typeof piece === 'string').join('') });
    }
    if (step.tool) {
      const tool = { kind: 'tool', name: step.tool.name, input: step.tool.input };
      if (!step.tool.approval || approved === true) tool.output = step.tool.output;
      parts.push(tool);
      if (step.tool.approval && approved === undefined) return parts;
    }
  }
  return parts;
}

// ---- the run -----------------------------------------------------------------------------

export async function runBrowserTest(options) {
  const base = options.base.replace(/\/+$/, '');
  const origin = new URL(base).origin;
  const api = options.api ?? '/api/chat';
  const clockUrl = options.clock ?? `${base}/__mock/clock`;
  const out = resolve(options.out);
  const timeout = options.timeoutMs ?? 60000;
  const scenario = JSON.parse(await readFile(options.scenario ?? join(here, 'scenario.json'), 'utf8'));
  const answer = (name) => {
    const found = scenario.answers.find((a) => a.name === name);
    if (!found) throw new Error(`the scenario file has no answer named ${name}`);
    return found;
  };
  const selected = SCENARIOS.filter(
    (name) => (!options.only || options.only.includes(name)) && !(options.skip ?? []).includes(name),
  );
  const executablePath = options.chromium ?? process.env.BATON_CHROMIUM ?? '/usr/bin/chromium';
  try {
    await access(executablePath);
  } catch {
    throw new TestFailure(`${executablePath} not found: Debian's chromium is installed by scripts/setup.sh`);
  }
  await mkdir(out, { recursive: true });
  // What an earlier run left here would pass for this run's: its screenshots and logs go.
  for (const name of await readdir(out)) {
    if (/\.png$|^failure[-.]|^browser-test\.log$/.test(name)) await rm(join(out, name), { force: true });
  }

  const log = [];
  const note = (line) => {
    log.push(line);
    if (options.verbose) console.log(line);
  };
  const problems = []; // page errors and foreign requests: fail the run at the next check
  const requests = []; // every request of every page: { method, url, headers, status }

  const profile = await mkdtemp(join(tmpdir(), 'baton-chromium-'));
  let context;
  const cleanup = async () => {
    await context?.close().catch(() => {});
    await rm(profile, { recursive: true, force: true });
  };
  onStop.add(cleanup);
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath,
      headless: true,
      chromiumSandbox: false,
      args: CHROMIUM_ARGS,
      viewport: { width: 960, height: 900 },
    });
  } catch (error) {
    onStop.delete(cleanup);
    await cleanup();
    throw new TestFailure(`${executablePath} did not start: ${error.message.split('\n')[0]}`);
  }
  context.setDefaultTimeout(timeout);
  const pages = new Map(); // name -> page

  function watch(page, name) {
    pages.set(name, page);
    page.on('console', (message) => {
      note(`[${name}] console.${message.type()}: ${message.text()}`);
      if (message.type() === 'error') problems.push(`${name}: console error: ${message.text()}`);
    });
    page.on('pageerror', (error) => problems.push(`${name}: uncaught ${error.name}: ${error.message}`));
    page.on('request', (request) => {
      const url = request.url();
      if (!url.startsWith('data:') && new URL(url).origin !== origin) {
        problems.push(`${name}: the page fetched ${url}, outside ${origin}`);
      }
      const record = {
        page: name,
        method: request.method(),
        url,
        headers: request.headers(),
        postData: request.postData(),
        status: null,
      };
      requests.push(record);
      request.response().then(
        (response) => {
          record.status = response?.status() ?? null;
          record.responseHeaders = response?.headers() ?? {};
        },
        () => {},
      );
    });
    return page;
  }

  async function open(name, path) {
    // The first tab is the window the browser opened with.
    const blank = pages.size === 0 ? context.pages()[0] : undefined;
    const page = watch(blank ?? (await context.newPage()), name);
    try {
      await page.goto(`${base}${path}`);
    } catch (error) {
      throw new TestFailure(`the page at ${base}${path} did not load: ${error.message.split('\n')[0]}`);
    }
    await waitPage(page, 'the page loaded and found nothing to resume', (s) => s.status === 'ready');
    return page;
  }

  function assertClean() {
    check(problems.length === 0, problems.join('; '));
  }

  // Waits until `predicate(readPage())` holds in the page; fails with the page's state if not.
  // An error the page shows ends the wait at once.
  async function waitPage(page, what, predicate, arg) {
    const expression = `((predicate, read, arg) => { const s = read(); return s.status === 'error' || s.error !== null || predicate(s, arg); })(${predicate.toString()}, ${readPage.toString()}, ${JSON.stringify(arg ?? null)})`;
    try {
      await page.waitForFunction(expression, undefined, { timeout, polling: 50 });
    } catch (error) {
      const state = await page.evaluate(readPage).catch(() => null);
      throw new TestFailure(`waiting for ${what}: ${error.message.split('\n')[0]}; the page shows ${show(state)}`);
    }
    const state = await page.evaluate(readPage);
    if (state.status === 'error' || state.error !== null) {
      throw new TestFailure(`waiting for ${what}, the page showed the error "${state.error}"; the page shows ${show(state)}`);
    }
    assertClean();
    return state;
  }

  async function send(page, text) {
    await page.locator('#input').fill(text);
    await page.locator('#input').press('Enter');
  }

  const lastAssistant = (state) => [...state.messages].reverse().find((m) => m.role === 'assistant');

  // Waits for an answer to settle with exactly `parts`; returns the page state.
  async function settled(page, what, parts, assistants) {
    return waitPage(
      page,
      what,
      (s, a) => {
        const last = [...s.messages].reverse().find((m) => m.role === 'assistant');
        return (
          s.status === 'ready' &&
          s.messages.filter((m) => m.role === 'assistant').length === a.assistants &&
          last &&
          JSON.stringify(last.parts.filter((p) => ['text', 'reasoning', 'tool', 'step'].includes(p.kind)).map(({ approvable, state, ...p }) => p)) === JSON.stringify(a.parts)
        );
      },
      { parts, assistants },
    );
  }

  // Waits until the answer in flight shows exactly `parts` (it is held there by the script).
  async function streamedUpTo(page, what, parts) {
    return waitPage(
      page,
      what,
      (s, a) => {
        const last = [...s.messages].reverse().find((m) => m.role === 'assistant');
        return (
          s.status === 'streaming' &&
          last &&
          JSON.stringify(last.parts.filter((p) => ['text', 'reasoning', 'tool', 'step'].includes(p.kind)).map(({ approvable, state, ...p }) => p)) === JSON.stringify(a.parts)
        );
      },
      { parts },
    );
  }

  async function advanceClock(ms) {
    const hint = options.clock ? '' : ' (--clock names the script clock: fake-llm\'s /__fake/clock behind a real gateway)';
    let response;
    try {
      response = await fetch(clockUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ advance_ms: ms }),
      });
    } catch (error) {
      throw new TestFailure(`POST ${clockUrl}: ${error.cause?.message ?? error.message}${hint}`);
    }
    check(response.ok, `POST ${clockUrl}: ${response.status} ${await response.text()}${hint}`);
  }

  async function screenshot(page, name) {
    await page.screenshot({ path: join(out, `${name}.png`), fullPage: true });
  }

  function assertTranscript(state, turns) {
    const expected = turns.flatMap((t) => [
      { role: 'user', parts: [{ kind: 'text', text: t.prompt }] },
      { role: 'assistant', parts: t.parts },
    ]);
    const actual = state.messages.map((m) => ({ role: m.role, parts: comparable(m) }));
    check(isDeepStrictEqual(actual, expected), `the chat shows ${show(actual)}, expected ${show(expected)}`);
  }

  const chatRequests = (page, method, suffix = '') =>
    requests.filter((r) => r.page === page && r.method === method && new URL(r.url).pathname === `${api}${suffix}`);

  const results = [];
  const turns = []; // the main chat's turns so far: { prompt, parts }
  let chatId;
  // The chat token: what the answer to the main chat's first POST (which had none) handed out.
  const chatToken = () => {
    const first = chatRequests('tab1', 'POST')[0];
    check(first, 'the chat has no POST yet, so no token');
    check(!first.headers.authorization, `the chat's first POST sent a token it cannot have had`);
    const token = first.responseHeaders?.['x-baton-chat-token'];
    check(token, `the answer to the chat's first POST has no x-baton-chat-token header`);
    return token;
  };
  let step = 'start';
  try {
    for (const name of selected) {
      step = name;
      const started = performance.now();
      if (name !== 'approval' && !pages.has('tab1')) {
        const page = await open('tab1', '/');
        const url = new URL(page.url());
        chatId = url.searchParams.get('chat');
        check(chatId, `the page did not put a chat id in its address: ${page.url()}`);
      }
      const tab1 = pages.get('tab1');

      if (name === 'headStart' || name === 'second') {
        const a = answer(name);
        const before = chatRequests('tab1', 'POST').length;
        await send(tab1, a.prompt);
        const parts = expectedParts(a);
        const state = await settled(tab1, `the answer to "${a.prompt}"`, parts, turns.length + 1);
        turns.push({ prompt: a.prompt, parts });
        assertTranscript(state, turns);
        const last = lastAssistant(state);
        check(last.timings.length > 0, `the answer shows no timings (message.metadata.baton.timings): ${show(last)}`);
        const posts = chatRequests('tab1', 'POST');
        check(posts.length === before + 1, `expected one POST ${api} for the message, saw ${posts.length - before}`);
        const post = posts[posts.length - 1];
        const token = chatToken(); // the first POST got one
        if (post !== posts[0]) {
          check(post.headers.authorization === `Bearer ${token}`,
            `a later POST sent authorization ${show(post.headers.authorization)}, not the chat token`);
        }
        if (name === 'second') {
          check(parts.some((p) => p.kind === 'reasoning'), 'the scenario\'s second answer has no reasoning');
        }
        await screenshot(tab1, name);
      }

      if (name === 'reload') {
        const a = answer('reload');
        await send(tab1, a.prompt);
        const partial = expectedParts(a, { upToHold: true });
        await streamedUpTo(tab1, 'the answer to stop at its hold', partial);
        const resumed = tab1.waitForResponse(
          (r) => r.request().method() === 'GET' && new URL(r.url()).pathname === `${api}/${encodeURIComponent(chatId)}/stream`,
        );
        await tab1.reload();
        const response = await resumed;
        check(response.status() === 200, `GET .../stream after the reload answered ${response.status()}`);
        check(response.request().headers().authorization === `Bearer ${chatToken()}`,
          'GET .../stream after the reload did not carry the chat token');
        const mid = await streamedUpTo(tab1, 'the reloaded page to resume the answer where it was', partial);
        assertTranscript(mid, [...turns, { prompt: a.prompt, parts: partial }]);
        await screenshot(tab1, 'reload-resumed');
        await advanceClock(1000);
        const parts = expectedParts(a);
        const state = await settled(tab1, 'the resumed answer to finish', parts, turns.length + 1);
        turns.push({ prompt: a.prompt, parts });
        assertTranscript(state, turns);
        await screenshot(tab1, name);
      }

      if (name === 'stop') {
        const a = answer('stop');
        await send(tab1, a.prompt);
        const partial = expectedParts(a, { upToHold: true });
        await streamedUpTo(tab1, 'the story to stop at its hold', partial);
        const stopResponse = tab1.waitForResponse(
          (r) => r.request().method() === 'POST' && new URL(r.url()).pathname === `${api}/${encodeURIComponent(chatId)}/stop`,
        );
        await tab1.locator('#stop').click();
        const response = await stopResponse;
        check(response.status() === 204, `POST .../stop answered ${response.status()}`);
        check(response.request().headers().authorization === `Bearer ${chatToken()}`, 'POST .../stop did not carry the chat token');
        const state = await waitPage(tab1, 'the page to be ready after stop', (s) => s.status === 'ready');
        turns.push({ prompt: a.prompt, parts: partial });
        assertTranscript(state, turns);
        // The turn is over in the gateway, not only in this tab: nothing to resume (204), or a
        // stream that ends in abort without the rest of the story.
        let replay;
        let body;
        try {
          replay = await fetch(`${base}${api}/${encodeURIComponent(chatId)}/stream`, {
            headers: { authorization: `Bearer ${chatToken()}` },
            signal: AbortSignal.timeout(timeout),
          });
          body = new Uint8Array(await replay.arrayBuffer());
        } catch (error) {
          throw new TestFailure(`GET .../stream after stop did not end (the turn went on?): ${error.message}`);
        }
        const headers = Object.fromEntries(replay.headers);
        const checked = await checkSse(body, { status: replay.status, headers, allow204: true });
        check(checked.errors.length === 0, `GET .../stream after stop: ${checked.errors.join('; ')}`);
        if (replay.status === 200) {
          check(checked.chunks.at(-1)?.type === 'abort', `the stopped turn ended with ${show(checked.chunks.at(-1))}, not abort`);
          const rest = a.steps[0].text.filter((p) => typeof p === 'string').at(-1);
          check(!JSON.stringify(checked.message).includes(rest), 'the stopped turn went on after the stop');
        }
        await screenshot(tab1, name);
      }

      if (name === 'twoTabs') {
        const a = answer('twoTabs');
        const tab2 = await open('tab2', `/?chat=${encodeURIComponent(chatId)}`);
        let state2 = await waitPage(tab2, 'the second tab to show the chat so far', (s, n) => s.messages.length === n, turns.length * 2);
        assertTranscript(state2, turns);
        await send(tab1, a.prompt);
        const partial = expectedParts(a, { upToHold: true });
        await streamedUpTo(tab1, 'the first tab to stream the answer to its hold', partial);
        await streamedUpTo(tab2, 'the second tab to stream the same answer', partial);
        const gets = chatRequests('tab2', 'GET', `/${encodeURIComponent(chatId)}/stream`).filter((r) => r.status === 200);
        check(gets.length >= 1, 'the second tab showed the answer without streaming it from the gateway');
        await advanceClock(1000);
        const parts = expectedParts(a);
        const state1 = await settled(tab1, 'the first tab\'s answer to finish', parts, turns.length + 1);
        state2 = await settled(tab2, 'the second tab\'s answer to finish', parts, turns.length + 1);
        turns.push({ prompt: a.prompt, parts });
        assertTranscript(state1, turns);
        assertTranscript(state2, turns);
        check(lastAssistant(state1).id === lastAssistant(state2).id,
          `the tabs show the answer under two ids: ${lastAssistant(state1).id}, ${lastAssistant(state2).id}`);
        await screenshot(tab1, 'twoTabs-first');
        await screenshot(tab2, 'twoTabs-second');
      }

      if (name === 'approval') {
        const a = answer('approval');
        const page = await open('files', `/?agent=${encodeURIComponent(a.agent ?? '')}`);
        await send(page, a.prompt);
        const asking = expectedParts(a);
        const cut = asking.findIndex((p) => p.kind === 'tool') + 1;
        const requested = asking.slice(0, cut).map((p) => (p.kind === 'tool' ? { ...p, output: undefined } : p));
        for (const p of requested) if (p.output === undefined) delete p.output;
        await waitPage(
          page,
          'the approval buttons',
          (s, want) => {
            const last = [...s.messages].reverse().find((m) => m.role === 'assistant');
            const tool = last?.parts.find((p) => p.kind === 'tool');
            return s.status === 'ready' && tool?.state === 'approval-requested' && tool.approvable === true && tool.name === want;
          },
          requested.find((p) => p.kind === 'tool').name,
        );
        await screenshot(page, 'approval-asked');
        await page.locator('[data-action="approve"]').click();
        // A reload while the approved answer goes on: the gateway replays the whole message
        // (the call from the turn before included), or the browser fails to place the result.
        const partial = expectedParts(a, { approved: true, upToHold: true });
        await streamedUpTo(page, 'the approved answer to stop at its hold', partial);
        await page.reload();
        await streamedUpTo(page, 'the reloaded page to resume the approved answer', partial);
        await advanceClock(1000);
        const parts = expectedParts(a, { approved: true });
        const state = await settled(page, 'the approved call\'s result and the answer after it', parts, 1);
        assertTranscript(state, [{ prompt: a.prompt, parts }]);
        // The approval went back as the AI SDK sends it: the assistant message, continued.
        const continuation = JSON.parse(chatRequests('files', 'POST')[1]?.postData ?? 'null');
        const last = continuation?.messages?.at(-1);
        check(continuation?.trigger === 'submit-message' && last?.role === 'assistant' && last.id === lastAssistant(state).id,
          `the approval was not sent as a continuation of the assistant message: ${show(continuation).slice(0, 300)}`);
        await screenshot(page, name);
      }

      assertClean();
      const seconds = ((performance.now() - started) / 1000).toFixed(1);
      results.push(name);
      console.log(`ok   ${name} (${seconds} s)`);
    }
  } catch (error) {
    for (const [name, page] of pages) {
      await page.screenshot({ path: join(out, `failure-${name}.png`), fullPage: true }).catch(() => {});
      const html = await page.content().catch(() => '');
      await writeFile(join(out, `failure-${name}.html`), html).catch(() => {});
    }
    await writeFile(join(out, 'failure.log'), `${log.join('\n')}\n\nrequests:\n${requests.map((r) => `${r.page} ${r.method} ${r.url} -> ${r.status}`).join('\n')}\n`);
    error.step = step;
    throw error;
  } finally {
    onStop.delete(cleanup);
    await cleanup();
  }
  await writeFile(join(out, 'browser-test.log'), `${log.join('\n')}\n`);
  return results;
}

// The mock gateway in this process, serving `webDir` (built into a temporary directory when
// not given); returns { base, close }.
async function startMock({ webDir, scenario, api }) {
  let temporary;
  if (!webDir) {
    temporary = await mkdtemp(join(tmpdir(), 'baton-web-'));
    const build = join(here, '..', '..', 'tasks', 'web', 'build.mjs');
    const built = spawnSync(process.execPath, [build, '--outdir', temporary, '--api', api], { encoding: 'utf8' });
    if (built.status !== 0) {
      throw new TestFailure(`building the page (${build}) failed; npm ci in tasks/web first?\n${built.stderr}`);
    }
    webDir = temporary;
  }
  for (const name of ['index.html', 'app.js', 'app.css']) {
    try {
      await access(join(webDir, name));
    } catch {
      throw new TestFailure(`${join(webDir, name)} is missing: --web-dir must be the built page`);
    }
  }
  const gateway = createMockGateway({
    webDir: resolve(webDir),
    scenario: JSON.parse(await readFile(scenario ?? join(here, 'scenario.json'), 'utf8')),
    base: api,
  });
  const { host, port } = await gateway.listen(0, '127.0.0.1');
  return {
    base: `http://${host}:${port}`,
    close: async () => {
      await gateway.close();
      if (temporary) await rm(temporary, { recursive: true, force: true });
    },
  };
}

async function main() {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        url: { type: 'string' },
        clock: { type: 'string' },
        'web-dir': { type: 'string' },
        out: { type: 'string' },
        scenario: { type: 'string' },
        api: { type: 'string', default: '/api/chat' },
        only: { type: 'string' },
        skip: { type: 'string' },
        chromium: { type: 'string' },
        'timeout-ms': { type: 'string' },
        verbose: { type: 'boolean', default: false },
      },
    }));
  } catch (error) {
    console.error(`browser-test: ${error.message}`);
    console.error('usage: node browser-test.mjs [--url http://HOST:PORT] [--clock URL] [--web-dir DIR] [--out DIR] [--only a,b] [--skip a,b]');
    process.exit(2);
  }
  const list = (text) => text?.split(',').map((s) => s.trim()).filter(Boolean);
  for (const name of [...(list(values.only) ?? []), ...(list(values.skip) ?? [])]) {
    if (!SCENARIOS.includes(name)) {
      console.error(`browser-test: no scenario "${name}" (${SCENARIOS.join(', ')})`);
      process.exit(2);
    }
  }
  const url = values.url ?? (process.env.BATON_GATEWAY_URL || undefined);
  if (url !== undefined && !/^https?:\/\/[^/]+\/?$/.test(url)) {
    console.error(`browser-test: --url must be a gateway's base URL such as http://127.0.0.1:8080, not ${url}`);
    process.exit(2);
  }
  const timeoutMs = values['timeout-ms'] ? Number(values['timeout-ms']) : undefined;
  if (timeoutMs !== undefined && !(timeoutMs > 0)) {
    console.error(`browser-test: --timeout-ms must be a positive number, not ${values['timeout-ms']}`);
    process.exit(2);
  }
  const out = resolve(values.out ?? join(tmpdir(), 'baton-browser-test-out'));

  let mock;
  let code = 0;
  // A stop from outside (a ctest timeout, ^C): the browser and the mock end with this process.
  for (const signal of ['SIGTERM', 'SIGINT']) {
    process.once(signal, () => {
      console.error(`browser-test: stopped by ${signal}`);
      Promise.allSettled([...onStop].map((undo) => undo()))
        .then(() => mock?.close())
        .finally(() => process.exit(1));
    });
  }
  try {
    if (url === undefined) {
      mock = await startMock({
        webDir: values['web-dir'] ?? (process.env.BATON_WEB_DIR || undefined),
        scenario: values.scenario,
        api: values.api,
      });
    }
    const base = url ?? mock.base;
    console.log(`browser-test: against ${url ? base : `the mock gateway at ${base}`}`);
    const passed = await runBrowserTest({
      base,
      clock: values.clock ?? (process.env.BATON_CLOCK_URL || undefined),
      out,
      scenario: values.scenario,
      api: values.api,
      only: list(values.only),
      skip: list(values.skip),
      chromium: values.chromium,
      timeoutMs,
      verbose: values.verbose,
    });
    const shots = (await readdir(out)).filter((name) => name.endsWith('.png'));
    if (shots.length === 0) throw new TestFailure(`no screenshot in ${out}`);
    console.log(`browser-test: ${passed.length} scenarios passed; ${shots.length} screenshots in ${out}`);
  } catch (error) {
    const where = error.step ? ` in ${error.step}` : '';
    console.error(`browser-test: FAIL${where}: ${error instanceof TestFailure ? error.message : error.stack}`);
    console.error(`browser-test: screenshots and the page's log in ${out}`);
    code = 1;
  } finally {
    await mock?.close();
  }
  process.exit(code);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await main();
}
