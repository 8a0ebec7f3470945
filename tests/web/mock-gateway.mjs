#!/usr/bin/env node
// A stand-in for baton-gateway's chat routes, for the page's tests only (docs/web.md). It keeps
// the HTTP contract of the gateway's API (the AI SDK transport, chat tokens, resume, stop,
// preload, the demo page's files) and answers from a scenario file instead of running agents.
//
//   node mock-gateway.mjs --web-dir DIR [--listen 127.0.0.1:0] [--scenario FILE]
//                         [--chunk-delay-ms 3] [--base /api/chat]
//
// It prints "listening HOST:PORT" once it serves. Test-only routes:
//   POST /__mock/clock     {"advance_ms": N}: moves the script clock (releases held answers)
//   GET  /__mock/requests  every request so far: [{method, path, authorization}]
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { dirname, extname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const here = dirname(fileURLToPath(import.meta.url));

export const STREAM_HEADERS = {
  'content-type': 'text/event-stream',
  'cache-control': 'no-cache',
  'x-vercel-ai-ui-message-stream': 'v1',
  'x-accel-buffering': 'no',
};
const MAX_BODY_BYTES = 8 << 20;
const TOKEN_TTL_MS = 60 * 60 * 1000;
const CONTENT_TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.map': 'application/json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
};

const id = (prefix) => `${prefix}_${randomBytes(8).toString('hex')}`;
const frame = (chunk) => `data: ${JSON.stringify(chunk)}\n\n`;
// A text as deltas, one word each with the spaces after it (as fake-llm streams a reply).
const words = (text) => text.match(/\S+\s*|\s+/g) ?? [];

class HttpError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function sendError(res, error) {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const status = error instanceof HttpError ? error.status : 500;
  const code = error instanceof HttpError ? error.code : 'INTERNAL';
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ error: { code, message: error.message } }));
}

async function readJson(req) {
  const parts = [];
  let size = 0;
  for await (const part of req) {
    size += part.length;
    if (size > MAX_BODY_BYTES) {
      throw new HttpError(413, 'RESOURCE_EXHAUSTED', `request body over ${MAX_BODY_BYTES} bytes`);
    }
    parts.push(part);
  }
  try {
    return JSON.parse(Buffer.concat(parts).toString('utf8'));
  } catch (error) {
    throw new HttpError(400, 'INVALID_ARGUMENT', `malformed JSON: ${error.message}`);
  }
}

function textOf(message) {
  return (message?.parts ?? [])
    .filter((part) => part?.type === 'text')
    .map((part) => part.text)
    .join('')
    .trim();
}

// The script clock: stands still until a test moves it, like fake-llm's.
class ScriptClock {
  ms = 0;
  #waiters = new Set();
  advance(ms) {
    this.ms += ms;
    for (const wake of this.#waiters) wake();
  }
  // Resolves when `ready()` holds, re-checked after every advance and every `poke`.
  until(ready, turn) {
    return new Promise((resolvePromise) => {
      const check = () => {
        if (ready()) {
          this.#waiters.delete(check);
          turn.wakers.delete(check);
          resolvePromise();
        }
      };
      this.#waiters.add(check);
      turn.wakers.add(check);
      check();
    });
  }
}

// One answer in flight or done: its chunks so far and the responses that follow it.
class Turn {
  chunks = [];
  done = false;
  stopped = false;
  readers = new Set();
  wakers = new Set();
  constructor({ messageId, key, prefix = [] }) {
    this.messageId = messageId;
    this.key = key; // trigger + last message id: a retried POST carries the same
    // For a continuation: the chunks of the message it continues (its earlier turn, without
    // that turn's finish), so a reader from scratch gets the whole message.
    this.prefix = prefix;
  }
  wake() {
    for (const wake of [...this.wakers]) wake();
  }
}

export function createMockGateway({
  webDir,
  scenario = { answers: [] },
  base = '/api/chat',
  chunkDelayMs = 3,
  keepAliveMs = 15000,
  defaultAgent = 'demo',
} = {}) {
  const chats = new Map();
  const clock = new ScriptClock();
  const requests = [];

  function findAnswer(agent, prompt) {
    const answer = scenario.answers.find(
      (a) => a.prompt === prompt && (a.agent === undefined || a.agent === agent),
    );
    return answer ?? { name: 'echo', steps: [{ text: `You said: ${prompt}` }] };
  }

  function authorize(req, chat) {
    const header = req.headers.authorization ?? '';
    if (header === '') throw new HttpError(401, 'UNAUTHENTICATED', 'this chat needs its chat token');
    if (header !== `Bearer ${chat.token}`) {
      throw new HttpError(403, 'PERMISSION_DENIED', 'the token is not this chat\'s');
    }
  }

  function newChat(chatId, agent) {
    const chat = {
      id: chatId,
      agent,
      token: id('tok'),
      tokenExpiresAt: Date.now() + TOKEN_TTL_MS,
      current: null,
      pendingApproval: null,
    };
    chats.set(chatId, chat);
    return chat;
  }

  function tokenHeaders(chat) {
    return {
      'x-baton-chat-token': chat.token,
      'x-baton-chat-token-expires': String(chat.tokenExpiresAt),
    };
  }

  // Sends `turn` to `res`: the chunks so far, then the rest as they come. `fromScratch` (a
  // resume) also sends the earlier chunks of a continued message.
  function attach(res, turn, { fromScratch, headers = {} }) {
    res.writeHead(200, { ...STREAM_HEADERS, ...headers });
    if (fromScratch && turn.prefix.length > 0) {
      for (const chunk of turn.prefix) res.write(frame(chunk));
      for (const chunk of turn.chunks.slice(1)) res.write(frame(chunk)); // its start is sent
    } else {
      for (const chunk of turn.chunks) res.write(frame(chunk));
    }
    if (turn.done) {
      res.end('data: [DONE]\n\n');
      return;
    }
    const reader = { res, skipStart: fromScratch && turn.prefix.length > 0 && turn.chunks.length === 0 };
    const keepAlive = setInterval(() => res.write(': keep-alive\n\n'), keepAliveMs);
    reader.stop = () => clearInterval(keepAlive);
    turn.readers.add(reader);
    // A reader going away does not stop the turn.
    res.on('close', () => {
      reader.stop();
      turn.readers.delete(reader);
    });
  }

  function emit(turn, chunk) {
    turn.chunks.push(chunk);
    for (const reader of turn.readers) {
      if (reader.skipStart && chunk.type === 'start') {
        reader.skipStart = false;
        continue;
      }
      reader.res.write(frame(chunk));
    }
  }

  function end(turn) {
    turn.done = true;
    for (const reader of turn.readers) {
      reader.stop();
      reader.res.end('data: [DONE]\n\n');
    }
    turn.readers.clear();
  }

  const pause = () =>
    chunkDelayMs > 0 ? new Promise((r) => setTimeout(r, chunkDelayMs)) : Promise.resolve();

  // Plays the steps of an answer into `turn`. Returns the pending approval, if the answer
  // stopped at one.
  async function play(turn, chat, steps, timings) {
    const clockAtStart = clock.ms;
    let held = 0;
    const open = { text: null, reasoning: null };
    const send = async (chunk) => {
      if (timings.firstChunkOut === undefined) timings.firstChunkOut = performance.now() - timings.t0;
      emit(turn, chunk);
      await pause();
    };
    const hold = async (ms) => {
      held += ms;
      await clock.until(() => turn.stopped || clock.ms >= clockAtStart + held, turn);
    };
    // Streams a text or reasoning part: a string, or strings and holds.
    const stream = async (kind, pieces) => {
      const partId = id(kind === 'text' ? 'txt' : 'rsn');
      await send({ type: `${kind}-start`, id: partId });
      open[kind] = partId;
      for (const piece of Array.isArray(pieces) ? pieces : [pieces]) {
        if (turn.stopped) return;
        if (typeof piece === 'object') {
          await hold(piece.hold_ms ?? 0);
          continue;
        }
        for (const delta of words(piece)) {
          if (turn.stopped) return;
          if (timings.modelFirstByte === undefined) {
            timings.modelFirstByte = performance.now() - timings.t0;
          }
          await send({ type: `${kind}-delta`, id: partId, delta });
        }
      }
      await send({ type: `${kind}-end`, id: partId });
      open[kind] = null;
    };

    for (const step of steps) {
      if (turn.stopped) break;
      await send({ type: 'start-step' });
      if (step.reasoning !== undefined) await stream('reasoning', step.reasoning);
      if (step.text !== undefined && !turn.stopped) await stream('text', step.text);
      if (turn.stopped) break;
      const tool = step.tool;
      if (tool) {
        const toolCallId = id('call');
        const input = JSON.stringify(tool.input ?? {});
        const cut = Math.ceil(input.length / 2);
        await send({ type: 'tool-input-start', toolCallId, toolName: tool.name });
        await send({ type: 'tool-input-delta', toolCallId, inputTextDelta: input.slice(0, cut) });
        await send({ type: 'tool-input-delta', toolCallId, inputTextDelta: input.slice(cut) });
        await send({ type: 'tool-input-available', toolCallId, toolName: tool.name, input: tool.input ?? {} });
        if (tool.approval) {
          const approvalId = id('apr');
          await send({ type: 'tool-approval-request', approvalId, toolCallId });
          await send({ type: 'finish-step' });
          const rest = steps.slice(steps.indexOf(step) + 1);
          return { approvalId, toolCallId, tool, rest, finishReason: 'tool-calls' };
        }
        const started = performance.now();
        await send({ type: 'tool-output-available', toolCallId, output: tool.output ?? null });
        timings.tools = (timings.tools ?? 0) + (performance.now() - started);
      }
      await send({ type: 'finish-step' });
    }
    if (turn.stopped) {
      // A stop closes what is open, then aborts.
      if (open.reasoning) emit(turn, { type: 'reasoning-end', id: open.reasoning });
      if (open.text) emit(turn, { type: 'text-end', id: open.text });
    }
    return null;
  }

  async function run(chat, turn, { steps, before = [], timings, prompt }) {
    try {
      if (before.length > 0) timings.firstChunkOut = performance.now() - timings.t0;
      for (const chunk of before) emit(turn, chunk);
      const pending = await play(turn, chat, steps, timings);
      if (turn.stopped) {
        emit(turn, { type: 'abort' });
      } else {
        if (pending) {
          chat.pendingApproval = {
            ...pending,
            prompt,
            messageId: turn.messageId,
            // The message so far, for a reader of the continuation from scratch.
            chunks: [...turn.prefix, ...turn.chunks.slice(turn.prefix.length ? 1 : 0)],
          };
        }
        timings.turn = performance.now() - timings.t0;
        const { t0, ...measured } = timings;
        emit(turn, {
          type: 'finish',
          finishReason: pending ? 'tool-calls' : 'stop',
          messageMetadata: { baton: { timings: { queued: 0.2, ...measured } } },
        });
      }
    } catch (error) {
      console.error(`mock-gateway: turn ${turn.messageId}: ${error.stack}`);
      emit(turn, { type: 'error', errorText: `mock gateway: ${error.message}` });
      emit(turn, { type: 'finish', finishReason: 'error' });
    }
    end(turn);
  }

  async function postChat(req, res, routeAgent) {
    const t0 = performance.now();
    const body = await readJson(req);
    const chatId = body?.id;
    if (typeof chatId !== 'string' || chatId === '' || chatId === '.' || chatId === '..' || chatId.length > 256) {
      throw new HttpError(400, 'INVALID_ARGUMENT', 'id must be a chat id (1 to 256 characters, not . or ..)');
    }
    if (body.trigger !== 'submit-message' && body.trigger !== 'regenerate-message') {
      throw new HttpError(400, 'INVALID_ARGUMENT', 'trigger must be submit-message or regenerate-message');
    }
    if (!Array.isArray(body.messages) || body.messages.length === 0) {
      throw new HttpError(400, 'INVALID_ARGUMENT', 'messages must be a non-empty array');
    }
    const last = body.messages[body.messages.length - 1];
    if (typeof last?.id !== 'string' || (last.role !== 'user' && last.role !== 'assistant')) {
      throw new HttpError(400, 'INVALID_ARGUMENT', 'the last message needs an id and the role user or assistant');
    }
    const agent = routeAgent ?? (typeof body.agent === 'string' && body.agent ? body.agent : defaultAgent);
    let chat = chats.get(chatId);
    let headers = { 'x-baton-chat-id': chatId };
    if (!chat) {
      chat = newChat(chatId, agent);
      headers = { ...headers, ...tokenHeaders(chat) };
    } else {
      authorize(req, chat);
    }

    const key = `${body.trigger}:${last.id}`;
    const current = chat.current;
    if (current && current.key === key) {
      // A retried POST: the answer already under way (or just given), never a second one.
      attach(res, current, { fromScratch: false, headers });
      return;
    }
    if (current && !current.done) {
      throw new HttpError(409, 'ABORTED', 'an answer is in flight in this chat; stop it or wait for it');
    }

    const timings = { t0 };
    if (body.trigger === 'submit-message' && last.role === 'assistant') {
      // A continuation: the approval answers for the call this chat is waiting on.
      const pending = chat.pendingApproval;
      if (!pending || pending.messageId !== last.id) {
        throw new HttpError(412, 'FAILED_PRECONDITION', `message ${last.id} has no approval pending`);
      }
      const part = (last.parts ?? []).find(
        (p) => p?.toolCallId === pending.toolCallId && p?.approval?.id === pending.approvalId,
      );
      if (!part || part.state !== 'approval-responded' || typeof part.approval.approved !== 'boolean') {
        throw new HttpError(400, 'INVALID_ARGUMENT', `no answer to approval ${pending.approvalId}`);
      }
      chat.pendingApproval = null;
      const approved = part.approval.approved;
      const turn = new Turn({ messageId: pending.messageId, key, prefix: pending.chunks });
      chat.current = turn;
      attach(res, turn, { fromScratch: false, headers });
      const answer = findAnswer(chat.agent, pending.prompt);
      const before = [
        { type: 'start', messageId: turn.messageId },
        approved
          ? { type: 'tool-output-available', toolCallId: pending.toolCallId, output: pending.tool.output ?? null }
          : { type: 'tool-output-denied', toolCallId: pending.toolCallId },
      ];
      const steps = approved ? pending.rest : (answer.deniedSteps ?? []);
      run(chat, turn, { steps, before, timings, prompt: pending.prompt });
      return;
    }

    // A new answer: to the new user message, or again to the last one (regenerate).
    const userMessage = [...body.messages].reverse().find((m) => m?.role === 'user');
    const prompt = textOf(userMessage);
    const answer = findAnswer(chat.agent, prompt);
    chat.pendingApproval = null;
    const turn = new Turn({ messageId: id('msg'), key });
    chat.current = turn;
    attach(res, turn, { fromScratch: false, headers });
    const steps = answer.steps ?? [];
    run(chat, turn, { steps, before: [{ type: 'start', messageId: turn.messageId }], timings, prompt });
  }

  async function route(req, res) {
    const url = new URL(req.url, 'http://mock');
    const path = url.pathname;
    requests.push({ method: req.method, path, authorization: req.headers.authorization ?? null });

    if (path === '/__mock/clock' && req.method === 'POST') {
      const body = await readJson(req);
      if (!Number.isFinite(body?.advance_ms) || body.advance_ms < 0) {
        throw new HttpError(400, 'INVALID_ARGUMENT', 'advance_ms must be a number >= 0');
      }
      clock.advance(body.advance_ms);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ ok: true, clock_ms: clock.ms }));
      return;
    }
    if (path === '/__mock/requests' && req.method === 'GET') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(requests));
      return;
    }
    if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('ok\n');
      return;
    }

    // {base} and /api/agents/{agent}/chat, each with its sub-routes.
    let chatBase = null;
    let routeAgent;
    const agentRoute = path.match(/^\/api\/agents\/([^/]+)\/chat(\/.*)?$/);
    if (agentRoute) {
      routeAgent = decodeURIComponent(agentRoute[1]);
      chatBase = `/api/agents/${agentRoute[1]}/chat`;
    } else if (path === base || path.startsWith(`${base}/`)) {
      chatBase = base;
    }
    if (chatBase !== null) {
      const rest = path.slice(chatBase.length);
      if (rest === '' && req.method === 'POST') return postChat(req, res, routeAgent);
      const sub = rest.match(/^\/([^/]+)\/(stream|stop|preload)$/);
      if (!sub) throw new HttpError(404, 'NOT_FOUND', `no route ${req.method} ${path}`);
      const chatId = decodeURIComponent(sub[1]);
      const chat = chats.get(chatId);
      if (sub[2] === 'stream' && req.method === 'GET') {
        // Unknown chat or nothing in flight: 204, which the client takes as "nothing to resume".
        if (!chat) {
          res.writeHead(204).end();
          return;
        }
        authorize(req, chat);
        if (!chat.current || chat.current.done) {
          res.writeHead(204).end();
          return;
        }
        attach(res, chat.current, { fromScratch: true, headers: { 'x-baton-chat-id': chatId } });
        return;
      }
      if (sub[2] === 'stop' && req.method === 'POST') {
        if (!chat) throw new HttpError(404, 'NOT_FOUND', `no chat ${chatId}`);
        authorize(req, chat);
        if (chat.current && !chat.current.done) {
          chat.current.stopped = true;
          chat.current.wake();
        }
        res.writeHead(204).end();
        return;
      }
      if (sub[2] === 'preload' && req.method === 'POST') {
        const body = await readJson(req).catch(() => ({}));
        let reply = { chatId };
        if (!chat) {
          const created = newChat(chatId, routeAgent ?? body?.agent ?? defaultAgent);
          reply = { chatId, chatToken: created.token, chatTokenExpiresAt: created.tokenExpiresAt };
        } else {
          authorize(req, chat);
        }
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(reply));
        return;
      }
      throw new HttpError(405, 'INVALID_ARGUMENT', `${req.method} is not allowed on ${path}`);
    }

    // The demo page: the files of the web directory, nothing below it, nothing hidden.
    if ((req.method === 'GET' || req.method === 'HEAD') && webDir) {
      const name = path === '/' ? 'index.html' : path.slice(1);
      if (/^[A-Za-z0-9_-][A-Za-z0-9._-]*$/.test(name)) {
        try {
          const data = await readFile(join(webDir, name));
          res.writeHead(200, {
            'content-type': CONTENT_TYPES[extname(name)] ?? 'application/octet-stream',
            'cache-control': 'no-cache',
          });
          res.end(req.method === 'HEAD' ? undefined : data);
          return;
        } catch {
          // not there: 404 below
        }
      }
    }
    throw new HttpError(404, 'NOT_FOUND', `no route ${req.method} ${path}`);
  }

  const server = http.createServer((req, res) => {
    route(req, res).catch((error) => sendError(res, error));
  });
  server.keepAliveTimeout = 30000;

  return {
    server,
    clock,
    requests,
    chats,
    listen(port = 0, host = '127.0.0.1') {
      return new Promise((resolvePromise, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          const address = server.address();
          resolvePromise({ host: address.address, port: address.port });
        });
      });
    },
    close() {
      for (const chat of chats.values()) {
        if (chat.current && !chat.current.done) {
          chat.current.stopped = true;
          chat.current.wake();
        }
      }
      server.closeAllConnections?.();
      return new Promise((resolvePromise) => server.close(() => resolvePromise()));
    },
  };
}

async function main() {
  const { values } = parseArgs({
    options: {
      'web-dir': { type: 'string' },
      listen: { type: 'string', default: '127.0.0.1:0' },
      scenario: { type: 'string', default: join(here, 'scenario.json') },
      'chunk-delay-ms': { type: 'string', default: '3' },
      base: { type: 'string', default: '/api/chat' },
    },
  });
  const [host, port] = values.listen.split(/:(?=\d+$)/);
  const scenario = JSON.parse(await readFile(values.scenario, 'utf8'));
  const gateway = createMockGateway({
    webDir: values['web-dir'] ? resolve(values['web-dir']) : undefined,
    scenario,
    base: values.base,
    chunkDelayMs: Number(values['chunk-delay-ms']),
  });
  const address = await gateway.listen(Number(port ?? 0), host || '127.0.0.1');
  process.stdout.write(`listening ${address.host}:${address.port}\n`);
  const shutdown = () => gateway.close().then(() => process.exit(0));
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((error) => {
    console.error(`mock-gateway: ${error.message}`);
    process.exit(1);
  });
}
