#!/usr/bin/env node
// The browser test against the real stack (docs/web.md): fake-llm, baton-orchestrator, one
// baton-worker hosting the agents of tasks/, and baton-gateway with head starts, each a process
// of its own on loopback with an ephemeral port, all in a scratch directory; then
// browser-test.mjs --url <gateway> --clock <fake-llm's script clock> drives the page through them.
//
//   node real-stack.mjs --fake-llm BIN --orchestrator BIN --worker BIN --gateway BIN
//        --web-dir DIR [--out DIR] [--scenario FILE] [--only a,b] [--skip a,b]
//        [--chromium PATH] [--timeout-ms N] [--deadline-ms 240000] [--log-level debug]
//        [--verbose]
//
//   --web-dir      the built page the gateway serves (<build>/web)
//   --out          screenshots and the browser's log (browser-test.mjs --out), and stack/: the
//                  scratch directory (the SQLite file, the fake-llm script, every process's log)
//                  (default: baton-real-stack-out in the system's temp dir)
//   --scenario     prompts and answers (default: scenario.json beside this file): the fake-llm
//                  script is made from it, and the browser test expects it
//   --deadline-ms  the whole run's limit: past it every process is stopped and the run fails
//   --log-level    the processes' BATON_LOG_LEVEL
//   --only, --skip, --chromium, --timeout-ms, --verbose: passed to browser-test.mjs
//
// The chat's first POST gets a head start: its step 1 is a model call made by the gateway, and
// the rest of the turn (the tool, step 2) the worker's. fake-llm answers each call by what the
// request holds (scriptFromScenario), so who calls and in which order does not matter. After the
// browser test, the gateway's metrics must count one head start per chat and none skipped, and
// every model call must have been answered by the script, once. Exit 0: passed; 1: failed;
// 2: bad arguments. Every process started here is stopped on exit (its process group), on a
// failure, a signal or the deadline too. The name keeps it out of `node --test`'s file patterns:
// it needs the built binaries.
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { access, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const here = dirname(fileURLToPath(import.meta.url));
const SCENARIOS = ['headStart', 'second', 'reload', 'stop', 'twoTabs', 'approval'];
// The scenarios that share the first tab's chat (agent weather); approval has a chat of its own.
const MAIN_CHAT = ['headStart', 'second', 'reload', 'stop', 'twoTabs'];

class HarnessFailure extends Error {}

// ---- the fake-llm script -------------------------------------------------------------------

// A text as deltas, one word each with the spaces after it (as fake-llm streams a reply).
const words = (text) => text.match(/\S+\s*|\s+/g) ?? [];
// A string as it appears inside a JSON string in a request body (the providers write UTF-8 as
// is, never \u escapes).
const inJson = (text) => JSON.stringify(text).slice(1, -1);

// The id of the tool call of step `index` of answer `name`: the request of the next step carries
// it (in the assistant's tool_use and in its tool_result), and no request before that one does.
export const toolCallId = (name, index) => `toolu_${name}_${index}`;

// One model call's answer as Anthropic events: the step's reasoning, its text (holds become
// fake-llm holds on the script clock, so the text before a hold is all a reader sees until the
// test moves the clock) and its tool call.
function stepEvents(name, index, step) {
  const events = [];
  events.push({
    type: 'message_start',
    message: {
      id: `msg_${name}_${index}`,
      type: 'message',
      role: 'assistant',
      model: 'test',
      content: [],
      stop_reason: null,
      stop_sequence: null,
      usage: { input_tokens: 1, output_tokens: 1 },
    },
  });
  let block = 0;
  const start = (content) => {
    events.push({ type: 'content_block_start', index: block, content_block: content });
    if (block === 0) events.push({ type: 'ping' });
  };
  const delta = (d) => events.push({ type: 'content_block_delta', index: block, delta: d });
  const stop = () => events.push({ type: 'content_block_stop', index: block++ });
  let outputTokens = 0;
  if (step.reasoning !== undefined) {
    start({ type: 'thinking', thinking: '' });
    delta({ type: 'thinking_delta', thinking: step.reasoning });
    delta({ type: 'signature_delta', signature: `sig_${name}_${index}` });
    stop();
  }
  if (step.text !== undefined) {
    start({ type: 'text', text: '' });
    for (const piece of Array.isArray(step.text) ? step.text : [step.text]) {
      if (typeof piece === 'object') {
        events.push({ hold_ms: piece.hold_ms ?? 0 });
        continue;
      }
      for (const text of words(piece)) {
        delta({ type: 'text_delta', text });
        outputTokens += 1;
      }
    }
    stop();
  }
  if (step.tool) {
    start({ type: 'tool_use', id: toolCallId(name, index), name: step.tool.name, input: {} });
    const input = JSON.stringify(step.tool.input ?? {});
    const cut = Math.ceil(input.length / 2);
    delta({ type: 'input_json_delta', partial_json: input.slice(0, cut) });
    delta({ type: 'input_json_delta', partial_json: input.slice(cut) });
    stop();
  }
  events.push({
    type: 'message_delta',
    delta: { stop_reason: step.tool ? 'tool_use' : 'end_turn', stop_sequence: null },
    usage: { output_tokens: Math.max(1, outputTokens) },
  });
  events.push({ type: 'message_stop' });
  return events;
}

// fake-llm's script for `scenario` (scenario.json): one response per model call, matched by what
// only that call's request holds and every later request of its chat holds too: the prompt for
// step 1 (the user's message), the tool call id of the step before for step 2 and later. The
// responses are listed latest call first, so a request takes its own answer and not one of an
// earlier call it repeats in its history; each may repeat, so a retried call gets the same
// answer. A denied approval's steps are not scripted (the browser test approves).
export function scriptFromScenario(scenario, names = SCENARIOS) {
  const responses = [];
  let before = ''; // what the calls so far hold: a later call's marker must not be in it
  for (const name of names) {
    const answer = scenario.answers.find((a) => a.name === name);
    if (!answer) throw new HarnessFailure(`the scenario file has no answer named ${name}`);
    for (const [index, step] of answer.steps.entries()) {
      if (index > 0 && !answer.steps[index - 1].tool) {
        throw new HarnessFailure(`${name}: step ${index + 1} follows a step without a tool call, so no model call makes it`);
      }
      const marker = index === 0 ? inJson(answer.prompt) : toolCallId(name, index - 1);
      if (before.includes(marker)) {
        throw new HarnessFailure(`${name}, step ${index + 1}: its request is told apart by ${JSON.stringify(marker)}, which an earlier call holds too`);
      }
      before += JSON.stringify(index === 0 ? answer.prompt : null) + JSON.stringify(step);
      responses.push({
        comment: `${name}, step ${index + 1}${index === 0 && answer === firstOfChat(scenario, names, name) ? ' (the chat\'s first: the gateway\'s head start)' : ''}`,
        match: { contains: marker, path: '/v1/messages' },
        repeat: true,
        format: 'anthropic',
        events: stepEvents(name, index, step),
      });
    }
  }
  return { comment: 'made by tests/web/real-stack.mjs from the browser test\'s scenario', responses: responses.reverse() };
}

// The answer that opens the chat `name` is in: its first call is the head start's step 1.
function firstOfChat(scenario, names, name) {
  const chat = MAIN_CHAT.includes(name) ? names.filter((n) => MAIN_CHAT.includes(n)) : [name];
  return scenario.answers.find((a) => a.name === chat[0]);
}

// How many model calls the selected scenarios make, and the head starts the gateway must have
// run: one per chat, `handover` when the chat's first answer has a tool call the run executes,
// else `final` (pure text, or a call that waits for the user's approval).
function expectations(scenario, names) {
  const calls = names.reduce((n, name) => n + scenario.answers.find((a) => a.name === name).steps.length, 0);
  const headStarts = { handover: 0, final: 0 };
  const chats = [names.find((n) => MAIN_CHAT.includes(n)), names.includes('approval') ? 'approval' : undefined];
  for (const first of chats.filter(Boolean)) {
    const answer = scenario.answers.find((a) => a.name === first);
    const tool = answer.steps[0].tool;
    headStarts[tool && !tool.approval ? 'handover' : 'final'] += 1;
  }
  return { calls, headStarts };
}

// ---- processes -----------------------------------------------------------------------------

// A process of the stack: its own process group (so that stopping it stops what it started),
// stdout and stderr into <dir>/<name>.log and read line by line.
class Child {
  constructor(name, argv, { dir, env = {}, onUnexpectedExit }) {
    this.name = name;
    this.logPath = join(dir, `${name}.log`);
    this.lines = []; // [stream, line]
    this.waiters = new Set();
    this.stopping = false;
    const log = createWriteStream(this.logPath);
    this.child = spawn(argv[0], argv.slice(1), {
      cwd: dir,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true, // a process group of its own
    });
    this.exited = new Promise((resolveExit) => {
      this.child.on('error', (error) => {
        this.exit = { error };
        resolveExit(this.exit);
        this.wake();
      });
      this.child.on('exit', (code, signal) => {
        this.exit = { code, signal };
        resolveExit(this.exit);
        this.wake();
        if (!this.stopping) onUnexpectedExit?.(this);
      });
    });
    for (const stream of ['stdout', 'stderr']) {
      let buffer = '';
      this.child[stream].setEncoding('utf8');
      this.child[stream].on('data', (data) => {
        log.write(data);
        buffer += data;
        let newline;
        while ((newline = buffer.indexOf('\n')) >= 0) {
          this.lines.push([stream, buffer.slice(0, newline)]);
          buffer = buffer.slice(newline + 1);
        }
        this.wake();
      });
    }
    this.closed = new Promise((resolveClosed) => this.child.on('close', () => {
      log.end(resolveClosed);
    }));
  }

  wake() {
    for (const waiter of [...this.waiters]) waiter();
  }

  describeExit() {
    if (!this.exit) return 'running';
    if (this.exit.error) return `did not start: ${this.exit.error.message}`;
    return this.exit.signal ? `ended by ${this.exit.signal}` : `exited with ${this.exit.code}`;
  }

  // Resolves with the first line of `stream` for which `match(line)` is truthy (lines already
  // printed count); rejects when the process ends first or `abort` fires.
  waitForLine(stream, match, what, abort) {
    return new Promise((resolveLine, rejectLine) => {
      let seen = 0;
      const check = () => {
        for (; seen < this.lines.length; seen++) {
          const [from, line] = this.lines[seen];
          if (from !== stream) continue;
          const result = match(line);
          if (result) {
            done();
            resolveLine(result);
            return;
          }
        }
        if (this.exit) {
          done();
          rejectLine(new HarnessFailure(`${this.name} ${this.describeExit()} before ${what}; see ${this.logPath}`));
        } else if (abort?.aborted) {
          done();
          rejectLine(new HarnessFailure(`${this.name}: no ${what} (${abort.reason?.message ?? 'stopped'}); see ${this.logPath}`));
        }
      };
      const done = () => {
        this.waiters.delete(check);
        abort?.removeEventListener('abort', check);
      };
      this.waiters.add(check);
      abort?.addEventListener('abort', check);
      check();
    });
  }

  signal(signal) {
    if (this.exit || this.child.pid === undefined) return;
    try {
      process.kill(-this.child.pid, signal); // the whole group
    } catch {
      // gone already
    }
  }

  // SIGTERM, then SIGKILL when it is still there after `graceMs`: a bound, not a wait for an
  // effect (the exit event ends the wait as soon as it comes).
  async stop(graceMs = 5000) {
    this.stopping = true;
    if (this.exit) return;
    this.signal('SIGTERM');
    let timer;
    const late = new Promise((resolveLate) => {
      timer = setTimeout(resolveLate, graceMs);
    });
    await Promise.race([this.exited, late]);
    clearTimeout(timer);
    if (!this.exit) {
      console.error(`real-stack: ${this.name} still running ${graceMs} ms after SIGTERM: SIGKILL`);
      this.signal('SIGKILL');
      await this.exited;
    }
    // What the group left behind (a process it started) goes too.
    try {
      process.kill(-this.child.pid, 'SIGKILL');
    } catch {
      // none
    }
    await this.closed;
  }
}

// ---- the run -------------------------------------------------------------------------------

async function fetchText(url, init) {
  const response = await fetch(url, { ...init, signal: AbortSignal.timeout(30000) });
  const body = await response.text();
  if (!response.ok) throw new HarnessFailure(`${init?.method ?? 'GET'} ${url}: ${response.status} ${body}`);
  return body;
}

// A Prometheus counter's value in `text` (0 when absent).
function counter(text, name) {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.slice(name.length + 1)) : 0;
}

// Two chats preloaded through the gateway (each answer carries its chat token); A's token on
// B's routes must be refused with a 401 or 403 and store nothing on B.
async function crossChatTokensAreRefused(gatewayUrl) {
  const preload = async (chat) => {
    const body = JSON.parse(await fetchText(`${gatewayUrl}/api/chat/${chat}/preload`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ agent: 'weather' }),
    }));
    if (typeof body.chatToken !== 'string' || body.chatToken === '') {
      throw new HarnessFailure(`preload of ${chat} issued no chat token: ${JSON.stringify(body)}`);
    }
    return body.chatToken;
  };
  const a = await preload('token-a');
  const b = await preload('token-b');
  const asA = { authorization: `Bearer ${a}`, 'content-type': 'application/json' };
  const attempts = [
    ['GET', '/api/chat/token-b/stream', undefined],
    ['POST', '/api/chat/token-b/stop', undefined],
    ['POST', '/api/chat', JSON.stringify({
      id: 'token-b',
      trigger: 'submit-message',
      messages: [{ id: 'intruder', role: 'user', parts: [{ type: 'text', text: 'hi' }] }],
    })],
    ['GET', '/v1/sessions/token-b/records?after=0', undefined],
  ];
  for (const [method, path, body] of attempts) {
    const response = await fetch(`${gatewayUrl}${path}`, { method, headers: asA, body, signal: AbortSignal.timeout(30000) });
    const text = await response.text();
    if (response.status !== 401 && response.status !== 403) {
      throw new HarnessFailure(`${method} ${path} with another chat's token: ${response.status} ${text.slice(0, 200)}`);
    }
    if (!text.includes('"error"')) throw new HarnessFailure(`${method} ${path}: the refusal is not a JSON error: ${text.slice(0, 200)}`);
  }
  const session = JSON.parse(await fetchText(`${gatewayUrl}/v1/sessions/token-b`, { headers: { authorization: `Bearer ${b}` } }));
  if (Number(session.inSeq ?? 0) !== 0) {
    throw new HarnessFailure(`chat B's log holds ${session.inSeq} records after refused requests: ${JSON.stringify(session)}`);
  }
}

export async function runRealStack(options) {
  const out = resolve(options.out);
  const dir = join(out, 'stack');
  const scenarioPath = resolve(options.scenario ?? join(here, 'scenario.json'));
  const scenario = JSON.parse(await readFile(scenarioPath, 'utf8'));
  const names = SCENARIOS.filter(
    (name) => (!options.only || options.only.includes(name)) && !(options.skip ?? []).includes(name),
  );
  for (const [flag, path] of [
    ['--fake-llm', options.fakeLlm],
    ['--orchestrator', options.orchestrator],
    ['--worker', options.worker],
    ['--gateway', options.gateway],
    ['--web-dir', options.webDir && join(options.webDir, 'index.html')],
  ]) {
    if (!path) throw new HarnessFailure(`${flag} is missing`);
    try {
      await access(path);
    } catch {
      throw new HarnessFailure(`${flag}: ${path} not found (build it first)`);
    }
  }
  // A fresh scratch directory: the SQLite file, the script, the auth file and the logs.
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });

  const children = [];
  const deadline = new AbortController();
  const timer = setTimeout(
    () => deadline.abort(new HarnessFailure(`the run took longer than --deadline-ms ${options.deadlineMs}`)),
    options.deadlineMs,
  );
  // A process of the stack that ends by itself fails the run at once.
  const died = new AbortController();
  const onUnexpectedExit = (child) => {
    if (!died.signal.aborted) {
      died.abort(new HarnessFailure(`${child.name} ${child.describeExit()} during the run; see ${child.logPath}`));
    }
  };
  const start = (name, argv, env) => {
    const child = new Child(name, argv, { dir, env, onUnexpectedExit });
    children.push(child);
    if (options.verbose) console.log(`real-stack: ${name}: ${argv.join(' ')}`);
    return child;
  };
  // Stops every process, the front first (so nothing is asked of what is already gone); how
  // each ended, for the log.
  const stopAll = async () => {
    for (const child of [...children].reverse()) await child.stop();
    return children.map((child) => `${child.name} ${child.describeExit()}`).join(', ');
  };
  const abortSignal = AbortSignal.any([deadline.signal, died.signal, ...(options.signal ? [options.signal] : [])]);
  const stopped = new Promise((resolveStopped, rejectStopped) => {
    abortSignal.addEventListener('abort', () => rejectStopped(abortSignal.reason), { once: true });
  });
  stopped.catch(() => {}); // seen by whichever guard is waiting, if any
  // Races `promise` with the deadline, a signal and the stack's processes.
  const guard = (promise) => Promise.race([promise, stopped]);
  // The last resort, should this process end some other way: no process of the stack outlives it.
  const killAll = () => {
    for (const child of children) child.signal('SIGKILL');
  };
  process.on('exit', killAll);

  // Tokens: the orchestrator checks them and signs chat tokens (the browser test expects one in
  // the answer to a chat's first POST); the worker and the gateway hold service tokens.
  const workerToken = randomBytes(24).toString('hex');
  const gatewayToken = randomBytes(24).toString('hex');
  const sha256 = (text) => createHash('sha256').update(text).digest('hex');
  await writeFile(join(dir, 'auth.json'), `${JSON.stringify({
    tokens: [
      { name: 'worker', sha256: sha256(workerToken), scopes: ['worker'] },
      { name: 'gateway', sha256: sha256(gatewayToken), scopes: ['sessions:create', 'sessions:write', 'sessions:read'] },
    ],
    chat_token_key: randomBytes(32).toString('hex'),
  }, null, 1)}\n`, { mode: 0o600 });
  const script = scriptFromScenario(scenario, names);
  const scriptPath = join(dir, 'fake-llm-script.json');
  await writeFile(scriptPath, `${JSON.stringify(script, null, 1)}\n`);
  const logLevel = { BATON_LOG_LEVEL: options.logLevel };

  let browser;
  try {
    // 1. fake-llm: the model of the gateway's head starts and of the worker.
    const llm = start('fake-llm', [options.fakeLlm, '--script', scriptPath, '--host', '127.0.0.1', '--port', '0']);
    const llmUrl = await guard(llm.waitForLine('stdout', (l) => /^listening (http:\/\/\S+)$/.exec(l)?.[1], 'listening line', abortSignal));

    // 2. The orchestrator, on a SQLite file in the scratch directory.
    const orchestrator = start('orchestrator', [
      options.orchestrator,
      '--listen=127.0.0.1:0',
      `--db=${join(dir, 'baton.db')}`,
      `--auth=${join(dir, 'auth.json')}`,
    ], logLevel);
    const orchestratorAddress = await guard(orchestrator.waitForLine('stdout', (l) => /^listening (\S+)$/.exec(l)?.[1], 'listening line', abortSignal));

    // 3. One worker hosting the agents of tasks/ (weather, files, chat) on fake-llm. It has
    // announced them (Hello, which GetAgent serves) when the orchestrator logs it connected.
    const workerId = `worker-${process.pid}`;
    start('worker', [
      options.worker,
      `--orchestrator=${orchestratorAddress}`,
      `--worker_id=${workerId}`,
      `--base_url=${llmUrl}`,
      '--provider=anthropic',
      '--api_key_env=BATON_TEST_NO_KEY',
      '--model=test',
      '--drain_grace_ms=1000', // on SIGTERM at the end, runs still live are not waited for long
    ], { ...logLevel, BATON_TOKEN: workerToken, BATON_TEST_NO_KEY: '' });
    await guard(orchestrator.waitForLine('stderr', (l) => {
      try {
        const entry = JSON.parse(l);
        return entry.msg === 'worker connected' && entry.worker_id === workerId;
      } catch {
        return false;
      }
    }, `"worker connected" log line for ${workerId}`, abortSignal));

    // 4. The gateway: the page, the chat routes, and head starts on fake-llm.
    const gateway = start('gateway', [
      options.gateway,
      '--listen=127.0.0.1:0',
      `--orchestrator=${orchestratorAddress}`,
      '--agent=weather',
      '--public_create',
      '--head_start',
      `--base_url=${llmUrl}`,
      '--api_key_env=BATON_TEST_NO_KEY',
      `--web_dir=${resolve(options.webDir)}`,
    ], { ...logLevel, BATON_TOKEN: gatewayToken, BATON_TEST_NO_KEY: '' });
    const gatewayAddress = await guard(gateway.waitForLine('stdout', (l) => /^listening (\S+)$/.exec(l)?.[1], 'listening line', abortSignal));
    const gatewayUrl = `http://${gatewayAddress}`;
    console.log(`real-stack: fake-llm ${llmUrl}, orchestrator ${orchestratorAddress}, worker ${workerId}, gateway ${gatewayUrl}; logs in ${dir}`);

    // 5. The browser test, against the gateway.
    const args = [
      join(here, 'browser-test.mjs'),
      '--url', gatewayUrl,
      '--clock', `${llmUrl}/__fake/clock`,
      '--out', out,
      '--scenario', scenarioPath,
      '--only', names.join(','),
    ];
    if (options.chromium) args.push('--chromium', options.chromium);
    if (options.timeoutMs) args.push('--timeout-ms', String(options.timeoutMs));
    if (options.verbose) args.push('--verbose');
    browser = spawn(process.execPath, args, {
      stdio: ['ignore', 'inherit', 'inherit'],
      detached: true,
      env: { ...process.env, BATON_GATEWAY_URL: '', BATON_CLOCK_URL: '' },
    });
    const browserExit = new Promise((resolveExit) => {
      browser.on('exit', (code, signal) => resolveExit({ code, signal }));
      browser.on('error', (error) => resolveExit({ error }));
    });
    let ended;
    try {
      ended = await guard(browserExit);
    } catch (error) {
      // The deadline, or a process of the stack died: the browser test goes (it closes its
      // chromium on SIGTERM), then its whole group.
      await stopBrowser(browser, browserExit);
      throw error;
    }
    browser = undefined;
    if (ended.error) throw new HarnessFailure(`browser-test.mjs did not start: ${ended.error.message}`);
    if (ended.code !== 0) {
      throw new HarnessFailure(`browser-test.mjs ${ended.signal ? `ended by ${ended.signal}` : `exited with ${ended.code}`}`);
    }

    // 6. What the stack did behind the page: the gateway ran each chat's head start (step 1 there,
    // handed over, never skipped), and every model call was a scripted one, made once.
    const want = expectations(scenario, names);
    const metrics = await guard(fetchText(`${gatewayUrl}/metrics`));
    const got = {
      handover: counter(metrics, 'baton_gateway_head_starts_total{signal="handover"}'),
      final: counter(metrics, 'baton_gateway_head_starts_total{signal="final"}'),
      skip: counter(metrics, 'baton_gateway_head_starts_total{signal="skip"}'),
    };
    if (got.handover !== want.headStarts.handover || got.final !== want.headStarts.final || got.skip !== 0) {
      throw new HarnessFailure(`the gateway's head starts were ${JSON.stringify(got)}, expected ${JSON.stringify({ ...want.headStarts, skip: 0 })}`);
    }
    const requests = JSON.parse(await guard(fetchText(`${llmUrl}/__fake/requests`)));
    await writeFile(join(dir, 'fake-llm-requests.json'), `${JSON.stringify(requests, null, 1)}\n`);
    const served = requests.map((r) => (r.response >= 0 ? script.responses[r.response].comment : `unscripted ${r.method} ${r.path}`));
    const unscripted = requests.filter((r) => r.response < 0);
    if (unscripted.length > 0 || requests.length !== want.calls || new Set(served).size !== served.length) {
      throw new HarnessFailure(`fake-llm answered ${requests.length} model calls (expected ${want.calls}, each once): ${served.join('; ')}; see ${join(dir, 'fake-llm-requests.json')}`);
    }
    // 7. A chat token reaches its own chat only: with chat A's token, chat B's answer, stop and
    // messages are refused, and B's log is untouched (no model call: both chats are preloads).
    await crossChatTokensAreRefused(gatewayUrl);
    console.log(`real-stack: ${names.length} scenarios passed against the real stack; ${requests.length} model calls, head starts ${JSON.stringify(got)}; a chat token of another chat refused`);
  } finally {
    clearTimeout(timer);
    if (browser) await stopBrowser(browser);
    console.log(`real-stack: stopped: ${await stopAll()}`);
    process.off('exit', killAll);
  }
}

// Stops browser-test.mjs: SIGTERM to it (it closes its chromium), then SIGKILL to its process
// group for anything left.
async function stopBrowser(browser, exited) {
  const gone = exited ?? new Promise((r) => browser.once('exit', r));
  if (browser.exitCode === null && browser.signalCode === null) {
    browser.kill('SIGTERM');
    let timer;
    await Promise.race([gone, new Promise((r) => { timer = setTimeout(r, 10000); })]);
    clearTimeout(timer);
  }
  try {
    process.kill(-browser.pid, 'SIGKILL');
  } catch {
    // gone
  }
}

const stopSignal = new AbortController();

async function main() {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        'fake-llm': { type: 'string' },
        orchestrator: { type: 'string' },
        worker: { type: 'string' },
        gateway: { type: 'string' },
        'web-dir': { type: 'string' },
        out: { type: 'string' },
        scenario: { type: 'string' },
        only: { type: 'string' },
        skip: { type: 'string' },
        chromium: { type: 'string' },
        'timeout-ms': { type: 'string' },
        'deadline-ms': { type: 'string', default: '240000' },
        'log-level': { type: 'string', default: 'debug' },
        verbose: { type: 'boolean', default: false },
      },
    }));
  } catch (error) {
    console.error(`real-stack: ${error.message}`);
    console.error('usage: node real-stack.mjs --fake-llm BIN --orchestrator BIN --worker BIN --gateway BIN --web-dir DIR [--out DIR] [--only a,b] [--skip a,b]');
    process.exit(2);
  }
  const list = (text) => text?.split(',').map((s) => s.trim()).filter(Boolean);
  for (const name of [...(list(values.only) ?? []), ...(list(values.skip) ?? [])]) {
    if (!SCENARIOS.includes(name)) {
      console.error(`real-stack: no scenario "${name}" (${SCENARIOS.join(', ')})`);
      process.exit(2);
    }
  }
  const selected = SCENARIOS.filter(
    (name) => (!values.only || list(values.only).includes(name)) && !(list(values.skip) ?? []).includes(name),
  );
  if (selected.length === 0) {
    console.error('real-stack: --only and --skip leave no scenario to run');
    process.exit(2);
  }
  const deadlineMs = Number(values['deadline-ms']);
  if (!(deadlineMs > 0)) {
    console.error(`real-stack: --deadline-ms must be a positive number, not ${values['deadline-ms']}`);
    process.exit(2);
  }
  const out = resolve(values.out ?? join(tmpdir(), 'baton-real-stack-out'));
  const run = runRealStack({
    // The processes run in the scratch directory: paths from here are made absolute.
    fakeLlm: values['fake-llm'] && resolve(values['fake-llm']),
    orchestrator: values.orchestrator && resolve(values.orchestrator),
    worker: values.worker && resolve(values.worker),
    gateway: values.gateway && resolve(values.gateway),
    webDir: values['web-dir'],
    out,
    scenario: values.scenario,
    only: list(values.only),
    skip: list(values.skip),
    chromium: values.chromium,
    timeoutMs: values['timeout-ms'],
    deadlineMs,
    logLevel: values['log-level'],
    verbose: values.verbose,
    signal: stopSignal.signal,
  });
  // A stop from outside (a ctest timeout, ^C) ends the run as the deadline does: its finally
  // stops every process. A second signal does not wait for that.
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP']) {
    process.on(signal, () => {
      if (stopSignal.signal.aborted) process.exit(1);
      console.error(`real-stack: stopped by ${signal}`);
      stopSignal.abort(new HarnessFailure(`stopped by ${signal}`));
    });
  }
  try {
    await run;
    process.exit(0);
  } catch (error) {
    console.error(`real-stack: FAIL: ${error instanceof HarnessFailure ? error.message : error.stack}`);
    console.error(`real-stack: screenshots in ${out}; the processes' logs in ${join(out, 'stack')}`);
    process.exit(1);
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await main();
}
