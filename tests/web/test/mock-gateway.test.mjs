// The mock gateway keeps the gateway's HTTP API (docs/web.md), and every answer it streams
// passes the SSE validator: so the browser test's stand-in is itself checked.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createMockGateway } from '../mock-gateway.mjs';
import { checkSse } from '../lib/sse-check.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const scenario = JSON.parse(readFileSync(join(here, '..', 'scenario.json'), 'utf8'));
let gateway;
let base;

before(async () => {
  gateway = createMockGateway({ scenario, chunkDelayMs: 0 });
  const { host, port } = await gateway.listen(0, '127.0.0.1');
  base = `http://${host}:${port}`;
});
after(() => gateway.close());

let counter = 0;
const user = (text) => ({ id: `u${++counter}`, role: 'user', parts: [{ type: 'text', text }] });

function post(path, body, headers = {}) {
  return fetch(`${base}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

// Reads a streamed body until `until(text)` holds; returns the text so far and the reader.
async function readUntil(response, until) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let text = '';
  while (!until(text)) {
    const { value, done } = await reader.read();
    if (done) break;
    text += decoder.decode(value, { stream: true });
  }
  return { text, reader };
}

async function readRest(reader, text) {
  const decoder = new TextDecoder();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return text;
    text += decoder.decode(value, { stream: true });
  }
}

async function valid(response, options = {}) {
  const body = new Uint8Array(await response.arrayBuffer());
  const result = await checkSse(body, {
    status: response.status,
    headers: Object.fromEntries(response.headers),
    ...options,
  });
  assert.deepEqual(result.errors, [], new TextDecoder().decode(body));
  return result;
}

const texts = (message) => message.parts.filter((p) => p.type === 'text').map((p) => p.text);

test('the first POST creates the chat, issues its token and streams a valid answer', async () => {
  const response = await post('/api/chat', { id: 'first', trigger: 'submit-message', messages: [user('What is the weather in Oslo?')] });
  assert.equal(response.status, 200);
  assert.equal(response.headers.get('x-baton-chat-id'), 'first');
  assert.match(response.headers.get('x-baton-chat-token'), /^tok_/);
  assert.ok(Number(response.headers.get('x-baton-chat-token-expires')) > Date.now());
  const { message } = await valid(response, { chatId: 'first' });
  assert.deepEqual(texts(message), ['Let me check the weather in Oslo.', 'It is 4 °C in Oslo right now.']);
  assert.deepEqual(message.parts.find((p) => p.type === 'tool-get_weather').output, { city: 'Oslo', tempC: 4 });
  assert.equal(typeof message.metadata.baton.timings.turn, 'number');
});

test('tokens: later requests need the chat token; a retried POST attaches to its answer', async () => {
  const first = user('And in Lisbon?');
  const created = await post('/api/chat', { id: 'tokens', trigger: 'submit-message', messages: [first] });
  const token = created.headers.get('x-baton-chat-token');
  const { message } = await valid(created);

  const next = { id: 'tokens', trigger: 'submit-message', messages: [first, message, user('And in Nairobi?')] };
  let response = await post('/api/chat', next);
  assert.equal(response.status, 401);
  assert.equal((await response.json()).error.code, 'UNAUTHENTICATED');
  response = await post('/api/chat', next, { authorization: 'Bearer tok_other' });
  assert.equal(response.status, 403);
  assert.equal((await response.json()).error.code, 'PERMISSION_DENIED');
  assert.equal((await fetch(`${base}/api/chat/tokens/stream`)).status, 401);

  // The same first POST again (the network failed): the answer it started, not a second one.
  const retried = await post('/api/chat', { id: 'tokens', trigger: 'submit-message', messages: [first] }, { authorization: `Bearer ${token}` });
  assert.equal(retried.status, 200);
  assert.equal(retried.headers.get('x-baton-chat-token'), null);
  assert.equal((await valid(retried)).message.id, message.id);
});

test('resume: 204 for an unknown chat or nothing in flight; mid-answer, a replay from start', async () => {
  assert.equal((await fetch(`${base}/api/chat/never-seen/stream`)).status, 204);
  const posted = await post('/api/chat', { id: 'resume', trigger: 'submit-message', messages: [user('And in Nairobi?')] });
  const token = posted.headers.get('x-baton-chat-token');
  const auth = { authorization: `Bearer ${token}` };
  // The answer holds in step 2 until the clock moves.
  const { text, reader } = await readUntil(posted, (t) => t.includes('Nairobi, '));
  const resumed = await fetch(`${base}/api/chat/resume/stream`, { headers: auth });
  assert.equal(resumed.status, 200);
  const replayed = await readUntil(resumed, (t) => t.includes('Nairobi, '));
  gateway.clock.advance(1000);
  const whole = await readRest(reader, text);
  const replay = await readRest(replayed.reader, replayed.text);
  assert.equal(replay, whole, 'the resumed reader gets the answer from its start, byte for byte');
  const { message } = await checkSse(whole);
  assert.deepEqual(texts(message), ['Let me check Nairobi.', 'It is 24 °C in Nairobi, sunny and warm.']);
  assert.equal((await fetch(`${base}/api/chat/resume/stream`, { headers: auth })).status, 204);
});

test('stop: the turn ends with its open text closed and abort, for every reader', async () => {
  const posted = await post('/api/chat', { id: 'stop', trigger: 'submit-message', messages: [user('Tell me a long story.')] });
  const auth = { authorization: `Bearer ${posted.headers.get('x-baton-chat-token')}` };
  const { text, reader } = await readUntil(posted, (t) => t.includes('hand. '));
  const other = await fetch(`${base}/api/chat/stop/stream`, { headers: auth });
  assert.equal((await post('/api/chat/stop/stop', {}, auth)).status, 204);
  const whole = await readRest(reader, text);
  const { message, chunks, errors } = await checkSse(whole);
  assert.deepEqual(errors, []);
  assert.equal(chunks.at(-1).type, 'abort');
  assert.deepEqual(texts(message), ['Once upon a time, a baton was passed from hand to hand. ']);
  const { chunks: otherChunks } = await valid(other);
  assert.equal(otherChunks.at(-1).type, 'abort');
  assert.equal((await post('/api/chat/unknown/stop', {}, auth)).status, 404);
});

test('approval: the request, the continuation, and a resume that replays the whole message', async () => {
  const ask = user('Please delete todo.txt.');
  const posted = await post('/api/chat', { id: 'approve', agent: 'files', trigger: 'submit-message', messages: [ask] });
  const auth = { authorization: `Bearer ${posted.headers.get('x-baton-chat-token')}` };
  const { message: asked, chunks } = await valid(posted, { majors: ['6'] });
  assert.equal(chunks.at(-1).finishReason, 'tool-calls');
  const tool = asked.parts.find((p) => p.type === 'tool-delete_file');
  assert.equal(tool.state, 'approval-requested');

  const answered = structuredClone(asked);
  const part = answered.parts.find((p) => p.type === 'tool-delete_file');
  part.state = 'approval-responded';
  part.approval = { ...part.approval, approved: true };
  // Only an approval this chat asked for is taken.
  const forged = structuredClone(answered);
  forged.parts.find((p) => p.type === 'tool-delete_file').approval.id = 'apr_forged';
  let response = await post('/api/chat', { id: 'approve', trigger: 'submit-message', messageId: asked.id, messages: [ask, forged] }, auth);
  assert.equal(response.status, 400);

  response = await post('/api/chat', { id: 'approve', trigger: 'submit-message', messageId: asked.id, messages: [ask, answered] }, auth);
  const { text, reader } = await readUntil(response, (t) => t.includes('Deleted '));
  const resumed = await fetch(`${base}/api/chat/approve/stream`, { headers: auth });
  gateway.clock.advance(1000);
  const whole = await readRest(reader, text);
  const continued = await checkSse(whole, { message: answered, majors: ['6'] });
  assert.deepEqual(continued.errors, []);
  assert.deepEqual(texts(continued.message), ['I will delete todo.txt once you approve.', 'Deleted todo.txt.']);
  // A reader from scratch gets the call too, so the result has a call to land on.
  const replay = await valid(resumed, { majors: ['6'] });
  assert.deepEqual(replay.message.parts.map((p) => p.type), continued.message.parts.map((p) => p.type));
  assert.equal(replay.message.parts.find((p) => p.type === 'tool-delete_file').state, 'output-available');
});

test('bad input: clear errors as JSON, nothing stored', async () => {
  const cases = [
    ['{"id": "bad", ', 400, /malformed JSON/],
    [{ id: '', trigger: 'submit-message', messages: [user('x')] }, 400, /id must be/],
    [{ id: '..', trigger: 'submit-message', messages: [user('x')] }, 400, /id must be/],
    [{ id: 'bad', trigger: 'resume-stream', messages: [user('x')] }, 400, /trigger must be/],
    [{ id: 'bad', trigger: 'submit-message', messages: [] }, 400, /messages must be/],
    ['x'.repeat((8 << 20) + 1), 413, /request body over/],
  ];
  for (const [body, status, pattern] of cases) {
    const response = await post('/api/chat', body);
    assert.equal(response.status, status);
    const { error } = await response.json();
    assert.match(error.message, pattern);
  }
  assert.equal(gateway.chats.has('bad'), false);
  assert.equal((await fetch(`${base}/api/chat/x/nope`)).status, 404);
});

test('preload creates the chat once and hands out its token', async () => {
  const first = await post('/api/chat/pre/preload', {});
  assert.equal(first.status, 200);
  const { chatId, chatToken, chatTokenExpiresAt } = await first.json();
  assert.equal(chatId, 'pre');
  assert.match(chatToken, /^tok_/);
  assert.ok(chatTokenExpiresAt > Date.now());
  assert.equal((await post('/api/chat/pre/preload', {})).status, 401);
  const again = await post('/api/chat/pre/preload', {}, { authorization: `Bearer ${chatToken}` });
  assert.deepEqual(await again.json(), { chatId: 'pre' });
});
