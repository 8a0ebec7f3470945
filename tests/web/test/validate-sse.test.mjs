// The SSE validator (lib/sse-check.mjs, validate-sse.mjs) on good and bad bodies: each bad one
// fails with the error that names its fault.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkSse, parseHead, parseRawResponse } from '../lib/sse-check.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const cli = join(here, '..', 'validate-sse.mjs');
const scratch = mkdtempSync(join(tmpdir(), 'validate-sse-'));

const sse = (...chunks) =>
  chunks.map((c) => (typeof c === 'string' && c.startsWith(':') ? `${c}\n\n` : `data: ${typeof c === 'string' ? c : JSON.stringify(c)}\n\n`)).join('');

const START = { type: 'start', messageId: 'msg_A' };
const FINISH = { type: 'finish', finishReason: 'stop' };
const text = (id, delta) => [
  { type: 'text-start', id },
  { type: 'text-delta', id, delta },
  { type: 'text-end', id },
];
// A head start's answer: step-1 text and a tool call, its result, step-2 text.
const HEAD_START = [
  START,
  { type: 'start-step' },
  ...text('t1', 'Let me check. '),
  { type: 'tool-input-start', toolCallId: 'c1', toolName: 'get_weather' },
  { type: 'tool-input-delta', toolCallId: 'c1', inputTextDelta: '{"city":' },
  { type: 'tool-input-delta', toolCallId: 'c1', inputTextDelta: '"Oslo"}' },
  { type: 'tool-input-available', toolCallId: 'c1', toolName: 'get_weather', input: { city: 'Oslo' } },
  { type: 'tool-output-available', toolCallId: 'c1', output: { tempC: 4 } },
  { type: 'finish-step' },
  ': keep-alive',
  { type: 'start-step' },
  ...text('t2', 'It is 4 °C.'),
  { type: 'finish-step' },
  { type: 'finish', finishReason: 'stop', messageMetadata: { baton: { timings: { turn: 12.5 } } } },
  '[DONE]',
];
const GOOD_HEADERS = {
  'content-type': 'text/event-stream',
  'cache-control': 'no-cache',
  'x-vercel-ai-ui-message-stream': 'v1',
  'x-accel-buffering': 'no',
  'x-baton-chat-id': 'c1',
};

async function errorsOf(body, options) {
  const { errors } = await checkSse(body, options);
  return errors;
}

async function assertFails(body, pattern, options) {
  const errors = await errorsOf(body, options);
  assert.ok(errors.length > 0, `expected a failure matching ${pattern}, got none`);
  assert.ok(
    errors.some((e) => pattern.test(e)),
    `expected an error matching ${pattern}, got:\n  ${errors.join('\n  ')}`,
  );
}

test('a head start answer is valid for ai 5 and 6 and folds into one message', async () => {
  const { message, errors, chunks, versions } = await checkSse(sse(...HEAD_START), {
    status: 200,
    headers: GOOD_HEADERS,
    chatId: 'c1',
  });
  assert.deepEqual(errors, []);
  assert.equal(versions['5'], '5.0.277');
  assert.equal(versions['6'], '6.0.333');
  assert.equal(chunks.length, 17);
  assert.equal(message.id, 'msg_A');
  assert.deepEqual(message.metadata, { baton: { timings: { turn: 12.5 } } });
  assert.deepEqual(
    message.parts.map((p) => p.type),
    ['step-start', 'text', 'tool-get_weather', 'step-start', 'text'],
  );
  assert.deepEqual(message.parts[2].output, { tempC: 4 });
  assert.equal(message.parts[4].text, 'It is 4 °C.');
});

test('keep-alive comments may come anywhere, even before start', async () => {
  assert.deepEqual(await errorsOf(sse(': stream-open', START, ': keep-alive', FINISH, '[DONE]')), []);
});

test('an answer that continues a message folds into it (--message)', async () => {
  const before = {
    id: 'msg_A',
    role: 'assistant',
    parts: [
      { type: 'step-start' },
      {
        type: 'tool-delete_file', toolCallId: 'c1', state: 'approval-responded',
        input: { path: 'todo.txt' }, approval: { id: 'ap1', approved: true },
      },
    ],
  };
  const body = sse(
    START,
    { type: 'tool-output-available', toolCallId: 'c1', output: { deleted: 'todo.txt' } },
    { type: 'start-step' },
    ...text('t', 'Deleted.'),
    { type: 'finish-step' },
    FINISH,
    '[DONE]',
  );
  const { message, errors } = await checkSse(body, { message: before, majors: ['6'] });
  assert.deepEqual(errors, []);
  assert.equal(message.parts[1].state, 'output-available');
  assert.equal(message.parts[3].text, 'Deleted.');
  // The same answer read from scratch (a resume that replays only the continuation) fails in
  // the browser: the call it answers is not in the message.
  await assertFails(body, /No tool invocation found for tool call ID "c1"/, { majors: ['6'] });
  // A continuation must keep the message's id.
  await assertFails(body.replace('msg_A', 'msg_Z'), /start.messageId is "msg_Z", not "msg_A"/, {
    message: before,
    majors: ['6'],
  });
});

test('approvals are ai 6 only: ai 5 refuses them, and the error says to check with --ai 6', async () => {
  const body = sse(
    START,
    { type: 'start-step' },
    { type: 'tool-input-available', toolCallId: 'c1', toolName: 'delete_file', input: { path: 'x' } },
    { type: 'tool-approval-request', approvalId: 'ap1', toolCallId: 'c1' },
    { type: 'finish-step' },
    { type: 'finish', finishReason: 'tool-calls' },
    '[DONE]',
  );
  const { message, errors } = await checkSse(body, { majors: ['6'] });
  assert.deepEqual(errors, []);
  assert.equal(message.parts[1].state, 'approval-requested');
  await assertFails(body, /^ai 5\.0\.277: .*--ai 6/);
});

test('a stopped answer closes its open text, then aborts', async () => {
  const stopped = [START, { type: 'start-step' }, { type: 'text-start', id: 't' }, { type: 'text-delta', id: 't', delta: 'Once' }];
  assert.deepEqual(await errorsOf(sse(...stopped, { type: 'text-end', id: 't' }, { type: 'abort' }, '[DONE]')), []);
  await assertFails(sse(...stopped, { type: 'abort' }, '[DONE]'), /abort with text t still open/);
});

test('an error chunk fails unless a failed turn is expected', async () => {
  const body = sse(START, { type: 'error', errorText: 'provider overloaded' }, { type: 'finish', finishReason: 'error' }, '[DONE]');
  await assertFails(body, /an error chunk: provider overloaded/);
  assert.deepEqual(await errorsOf(body, { expectError: true }), []);
  await assertFails(sse(START, FINISH, '[DONE]'), /no error chunk, but one was expected/, { expectError: true });
});

test('headers: the stream headers are required when given', async () => {
  const body = sse(START, FINISH, '[DONE]');
  assert.deepEqual(await errorsOf(body, { status: 200, headers: GOOD_HEADERS }), []);
  const without = { ...GOOD_HEADERS };
  delete without['x-vercel-ai-ui-message-stream'];
  await assertFails(body, /header x-vercel-ai-ui-message-stream is missing/, { status: 200, headers: without });
  await assertFails(body, /content-type is "application\/json"/, {
    status: 200,
    headers: { ...GOOD_HEADERS, 'content-type': 'application/json' },
  });
  await assertFails(body, /must not be compressed/, { status: 200, headers: { ...GOOD_HEADERS, 'content-encoding': 'gzip' } });
  await assertFails(body, /status 500/, { status: 500, headers: GOOD_HEADERS });
  await assertFails(body, /x-baton-chat-id is "c1", not "c2"/, { status: 200, headers: GOOD_HEADERS, chatId: 'c2' });
  assert.deepEqual(await errorsOf(body, { status: 200, headers: { ...GOOD_HEADERS, 'content-type': 'text/event-stream; charset=utf-8' } }), []);
});

test('204: valid only where nothing in flight is a fine answer (--allow-204)', async () => {
  const { message, errors } = await checkSse('', { status: 204, headers: {}, allow204: true });
  assert.deepEqual(errors, []);
  assert.equal(message, null);
  await assertFails('', /status 204/, { status: 204, headers: {} });
});

const BAD = [
  ['no [DONE] at the end', sse(START, FINISH), /does not end with data: \[DONE\]/],
  ['data after [DONE]', sse(START, FINISH, '[DONE]', FINISH), /data after \[DONE\]/],
  ['an unterminated last event', `${sse(START, FINISH)}data: [DONE]\n`, /last event is not ended by a blank line/],
  ['a named event', `event: ping\n${sse(START, FINISH, '[DONE]')}`, /field "event"/],
  ['an id line', `id: 7\n${sse(START, FINISH, '[DONE]')}`, /field "id"/],
  ['carriage returns', sse(START, FINISH, '[DONE]').replace(/\n/g, '\r\n'), /carriage return/],
  ['an empty data line', `${sse(START)}data: \n\n${sse(FINISH, '[DONE]')}`, /an empty data line/],
  ['two data lines in one event', `data: {"type":"start",\ndata: "messageId":"m"}\n\n${sse(FINISH, '[DONE]')}`, /a second data line/],
  ['data: without its space', `data:${JSON.stringify(START)}\n\n${sse(FINISH, '[DONE]')}`, /without its space/],
  ['not JSON', sse(START, '{"type":"finish"', FINISH, '[DONE]'), /not JSON/],
  ['an empty body', '', /the body is empty/],
  ['start is not first', sse({ type: 'start-step' }, START, { type: 'finish-step' }, FINISH, '[DONE]'), /first chunk is "start-step"/],
  ['start without messageId', sse({ type: 'start' }, FINISH, '[DONE]'), /start has no messageId/],
  ['a null optional field', sse({ type: 'start', messageId: null }, FINISH, '[DONE]'), /AI_TypeValidationError/],
  ['two starts', sse(START, { ...START, messageId: 'msg_B' }, FINISH, '[DONE]'), /a second start/],
  ['no finish', sse(START, { type: 'start-step' }, { type: 'finish-step' }, '[DONE]'), /last chunk is "finish-step", not finish or abort/],
  ['a chunk after finish', sse(START, FINISH, { type: 'start-step' }, { type: 'finish-step' }, '[DONE]'), /finish is not the last chunk/],
  ['finish and abort', sse(START, FINISH, { type: 'abort' }, '[DONE]'), /finish is not the last chunk/],
  ['a baton control record', sse(START, { type: 'turn-complete' }, FINISH, '[DONE]'), /a baton control record reached the client/],
  ['an unknown chunk type', sse(START, { type: 'text-blob' }, FINISH, '[DONE]'), /unknown chunk type "text-blob"/],
  ['finishReason "unknown" (ai 6 refuses it)', sse(START, { type: 'finish', finishReason: 'unknown' }), /ai 6\.0\.333: AI_TypeValidationError/],
  ['text-delta without text-start', sse(START, { type: 'start-step' }, { type: 'text-delta', id: 'x', delta: 'hi' }, { type: 'finish-step' }, FINISH, '[DONE]'), /text-delta for text "x", which is not open/],
  ['text left open at finish-step', sse(START, { type: 'start-step' }, { type: 'text-start', id: 'a' }, { type: 'finish-step' }, FINISH, '[DONE]'), /finish-step with text a still open/],
  ['reasoning left open at finish', sse(START, { type: 'start-step' }, { type: 'reasoning-start', id: 'r' }, { type: 'finish-step' }, FINISH, '[DONE]'), /with reasoning r still open/],
  ['a tool result for a call never seen', sse(START, { type: 'start-step' }, { type: 'tool-output-available', toolCallId: 'nope', output: 1 }, { type: 'finish-step' }, FINISH, '[DONE]'), /No tool invocation found for tool call ID "nope"/],
  ['tool input still streaming at finish-step', sse(START, { type: 'start-step' }, { type: 'tool-input-start', toolCallId: 'c', toolName: 't' }, { type: 'finish-step' }, FINISH, '[DONE]'), /tool input c still streaming/],
  ['a step inside a step', sse(START, { type: 'start-step' }, { type: 'start-step' }, { type: 'finish-step' }, FINISH, '[DONE]'), /start-step inside an open step/],
  ['finish inside a step', sse(START, { type: 'start-step' }, FINISH, '[DONE]'), /finish inside an open step/],
  ['text outside a step', sse(START, ...text('t', 'hi'), FINISH, '[DONE]'), /text-start outside a step/],
  ['invalid UTF-8', new Uint8Array([...new TextEncoder().encode('data: {"type":"start","messageId":"'), 0xff, ...new TextEncoder().encode('"}\n\n')]), /not valid UTF-8/],
  ['a byte order mark', `\ufeff${sse(START, FINISH, '[DONE]')}`, /byte order mark/],
];

for (const [name, body, pattern] of BAD) {
  test(`bad: ${name}`, () => assertFails(body, pattern));
}

test('parseHead reads curl -D output, the last response of several', () => {
  const head = 'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nX-A: 1\r\nx-a: 2\r\n\r\n';
  assert.deepEqual(parseHead(head), { status: 200, headers: { 'content-type': 'text/event-stream', 'x-a': '1, 2' } });
});

test('parseRawResponse undoes chunked transfer encoding and refuses a cut one', () => {
  const body = sse(START, FINISH, '[DONE]');
  const chunked = `${(10).toString(16)}\r\n${body.slice(0, 10)}\r\n${(body.length - 10).toString(16)}\r\n${body.slice(10)}\r\n0\r\n\r\n`;
  const raw = `HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/event-stream\r\n\r\n${chunked}`;
  const parsed = parseRawResponse(Buffer.from(raw));
  assert.equal(parsed.status, 200);
  assert.equal(new TextDecoder().decode(parsed.body), body);
  assert.throws(() => parseRawResponse(Buffer.from(raw.slice(0, -7))), /cut short/);
  assert.throws(() => parseRawResponse(Buffer.from('HTTP/1.1 200 OK\r\n')), /no end of the header block/);
});

// ---- the command line ------------------------------------------------------------------

function run(args, input) {
  return spawnSync(process.execPath, [cli, ...args], { input, encoding: 'utf8' });
}

test('cli: a valid body on stdin prints the message and exits 0', () => {
  const result = run([], sse(...HEAD_START));
  assert.equal(result.status, 0, result.stderr);
  const message = JSON.parse(result.stdout);
  assert.equal(message.id, 'msg_A');
  assert.equal(message.parts.length, 5);
});

test('cli: an invalid body exits 1 and says why on stderr', () => {
  const result = run(['-'], sse(START, { type: 'turn-complete' }, FINISH, '[DONE]'));
  assert.equal(result.status, 1);
  assert.equal(result.stdout, '');
  assert.match(result.stderr, /INVALID \(checked with ai 5\.0\.277, ai 6\.0\.333\)/);
  assert.match(result.stderr, /a baton control record reached the client/);
});

test('cli: body and --headers files, --raw, --message, --allow-204', () => {
  const body = join(scratch, 'body.sse');
  const head = join(scratch, 'head.txt');
  writeFileSync(body, sse(...HEAD_START));
  writeFileSync(head, 'HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\nx-vercel-ai-ui-message-stream: v1\r\nx-accel-buffering: no\r\nx-baton-chat-id: c1\r\n\r\n');
  let result = run([body, '--headers', head, '--chat-id', 'c1']);
  assert.equal(result.status, 0, result.stderr);
  writeFileSync(head, 'HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n');
  result = run([body, '--headers', head]);
  assert.equal(result.status, 1);
  assert.match(result.stderr, /header cache-control is missing/);

  const raw = join(scratch, 'raw.http');
  const small = sse(START, FINISH, '[DONE]');
  writeFileSync(raw, `HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\nx-vercel-ai-ui-message-stream: v1\r\nx-accel-buffering: no\r\ntransfer-encoding: chunked\r\n\r\n${small.length.toString(16)}\r\n${small}\r\n0\r\n\r\n`);
  result = run(['--raw', raw]);
  assert.equal(result.status, 0, result.stderr);
  assert.equal(JSON.parse(result.stdout).id, 'msg_A');

  writeFileSync(raw, 'HTTP/1.1 204 No Content\r\n\r\n');
  assert.equal(run(['--raw', raw]).status, 1);
  result = run(['--raw', raw, '--allow-204']);
  assert.equal(result.status, 0, result.stderr);
  assert.equal(result.stdout.trim(), 'null');

  const message = join(scratch, 'message.json');
  writeFileSync(message, JSON.stringify({ id: 'msg_A', role: 'assistant', parts: [{ type: 'text', text: 'Hi ', state: 'done' }] }));
  result = run(['--message', message, '--ai', '6'], sse(START, { type: 'start-step' }, ...text('t', 'there'), { type: 'finish-step' }, FINISH, '[DONE]'));
  assert.equal(result.status, 0, result.stderr);
  assert.deepEqual(JSON.parse(result.stdout).parts.map((p) => p.text ?? p.type), ['Hi ', 'step-start', 'there']);
});

test('cli: bad arguments exit 2', () => {
  assert.equal(run(['--nope']).status, 2);
  assert.equal(run(['a', 'b']).status, 2);
  assert.equal(run([join(scratch, 'missing.sse')]).status, 2);
  assert.equal(run(['--raw', 'x', 'body']).status, 2);
});
