// Checks one UI message stream (an SSE body baton-gateway sent) the way a browser reads it, and
// against the gateway's own rules (docs/web.md, "The SSE validator"):
//
//   1. the response: status 200 and the UI message stream headers, when they are given;
//   2. the framing: UTF-8, events of one `data: ` line or `:` comments, each ended by a blank
//      line, `data: [DONE]` last;
//   3. the answer: one `start` with a messageId first, `finish` or `abort` last, steps and parts
//      opened and closed in order, no baton control record, no `error` chunk unless expected;
//   4. for each `ai` major installed here (5.x as `ai5`, 6.x as `ai`): the browser's own
//      pipeline, DefaultChatTransport's parseJsonEventStream with uiMessageChunkSchema, then
//      readUIMessageStream with terminateOnError, from the message a continuation extends.
//
// checkSse() returns { message, errors, chunks, versions }: the UIMessage the newest major
// folded, and every problem found, each a one-line string.
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));

// The `ai` majors the validator knows: the npm name each is installed under here.
export const PACKAGES = { 5: 'ai5', 6: 'ai' };

// What the AI SDK's own server helper sends (UI_MESSAGE_STREAM_HEADERS), minus `connection`,
// which is HTTP/1.1 framing and not the gateway's to promise.
export const REQUIRED_HEADERS = {
  'x-vercel-ai-ui-message-stream': 'v1',
  'cache-control': 'no-cache',
  'x-accel-buffering': 'no',
};

// Chunk types a 6.x client folds. Anything else is refused by its schema; the validator names
// the baton records among them so the error says what leaked.
const CHUNK_TYPES = new Set([
  'start', 'start-step', 'finish-step', 'finish', 'abort', 'error', 'message-metadata',
  'text-start', 'text-delta', 'text-end', 'reasoning-start', 'reasoning-delta', 'reasoning-end',
  'tool-input-start', 'tool-input-delta', 'tool-input-available', 'tool-input-error',
  'tool-approval-request', 'tool-output-available', 'tool-output-error', 'tool-output-denied',
  'source-url', 'source-document', 'file',
]);
const BATON_RECORDS = new Set([
  'turn-complete', 'trim', 'session-closed', 'upgrade-required', 'control', 'handover',
  'handover-skip', 'handover-prepare', 'stop', 'message', 'regenerate', 'close', 'preload',
]);
// Chunks that belong inside a step (between start-step and finish-step).
const STEP_CHUNKS = new Set([
  'text-start', 'text-delta', 'text-end', 'reasoning-start', 'reasoning-delta', 'reasoning-end',
  'tool-input-start', 'tool-input-delta', 'tool-input-available', 'tool-input-error',
  'tool-approval-request',
]);

let versionsCache;
export async function installedVersions() {
  if (!versionsCache) {
    versionsCache = {};
    for (const [major, name] of Object.entries(PACKAGES)) {
      const text = await readFile(join(here, '..', 'node_modules', name, 'package.json'), 'utf8');
      versionsCache[major] = JSON.parse(text).version;
    }
  }
  return versionsCache;
}

const short = (value, limit = 160) => {
  const text = typeof value === 'string' ? value : JSON.stringify(value);
  return text.length > limit ? `${text.slice(0, limit)}…` : text;
};

function checkHeaders(status, headers, errors, { allow204, chatId }) {
  if (status !== undefined && status !== 200 && !(status === 204 && allow204)) {
    errors.push(`status ${status}: a UI message stream is answered 200`);
  }
  if (headers === undefined || status === 204) return;
  const contentType = headers['content-type'] ?? '';
  if (!/^text\/event-stream(\s*;.*)?$/i.test(contentType)) {
    errors.push(`header content-type is "${contentType}", not text/event-stream`);
  }
  for (const [name, want] of Object.entries(REQUIRED_HEADERS)) {
    if (headers[name] === undefined) errors.push(`header ${name} is missing (want "${want}")`);
    else if (headers[name].toLowerCase() !== want) {
      errors.push(`header ${name} is "${headers[name]}", not "${want}"`);
    }
  }
  if (headers['content-encoding'] !== undefined && headers['content-encoding'] !== 'identity') {
    errors.push(`header content-encoding is "${headers['content-encoding']}": the stream must not be compressed`);
  }
  if (chatId !== undefined && headers['x-baton-chat-id'] !== chatId) {
    errors.push(`header x-baton-chat-id is "${headers['x-baton-chat-id'] ?? ''}", not "${chatId}"`);
  }
}

// Splits the body into events; returns [{ data, line }] for the events that carry data.
function parseFraming(text, errors) {
  const events = [];
  if (text.includes('\r')) {
    errors.push('framing: the body has a carriage return; events are framed with "\\n" only');
    return events;
  }
  if (text.length === 0) {
    errors.push('framing: the body is empty');
    return events;
  }
  // An event ends at a blank line. Lines after the last blank line form an unterminated event,
  // which the browser never sees.
  const lines = text.split('\n');
  const last = lines.pop(); // '' when the text ends with a line break
  if (last !== '' || (lines.length > 0 && lines[lines.length - 1] !== '')) {
    errors.push('framing: the last event is not ended by a blank line (a browser drops it)');
  }
  let data;
  let eventLine;
  for (const [i, field] of lines.entries()) {
    const where = `line ${i + 1}`;
    if (field === '') {
      if (data !== undefined) events.push({ data, line: eventLine });
      data = undefined;
      continue;
    }
    if (field.startsWith(':')) continue;
    if (field.startsWith('data:')) {
      if (data !== undefined) {
        errors.push(`framing: ${where}: a second data line in one event (one chunk per event)`);
      }
      if (!field.startsWith('data: ')) errors.push(`framing: ${where}: "data:" without its space`);
      data = field.slice(field.startsWith('data: ') ? 'data: '.length : 'data:'.length);
      eventLine = i + 1;
    } else {
      const name = field.split(':')[0];
      errors.push(`framing: ${where}: field "${short(name, 40)}" (the chat stream sends only data lines and comments)`);
    }
  }
  return events;
}

// The gateway's rules for one answer, over the chunks in order.
function checkAnswer(events, errors, { expectError, messageId }) {
  const chunks = [];
  let done = 0;
  for (const [index, event] of events.entries()) {
    const where = `event ${index + 1} (line ${event.line})`;
    if (event.data === '[DONE]') {
      done++;
      if (index !== events.length - 1) errors.push(`${where}: data after [DONE]`);
      continue;
    }
    if (event.data === '') {
      errors.push(`${where}: an empty data line (a browser fails on it; keep-alives are comments)`);
      continue;
    }
    let chunk;
    try {
      chunk = JSON.parse(event.data);
    } catch (error) {
      errors.push(`${where}: not JSON: ${short(event.data)}`);
      continue;
    }
    if (chunk === null || typeof chunk !== 'object' || Array.isArray(chunk) || typeof chunk.type !== 'string') {
      errors.push(`${where}: not a chunk object with a string "type": ${short(event.data)}`);
      continue;
    }
    chunks.push({ chunk, where });
  }
  if (done === 0) errors.push('the body does not end with data: [DONE]');
  if (done > 1) errors.push(`data: [DONE] is sent ${done} times`);
  if (chunks.length === 0) {
    errors.push('no chunks: an answer has at least start and finish');
    return chunks.map((c) => c.chunk);
  }

  const first = chunks[0].chunk;
  if (first.type !== 'start') {
    errors.push(`${chunks[0].where}: the first chunk is "${first.type}", not "start"`);
  } else if (typeof first.messageId !== 'string' || first.messageId === '') {
    errors.push(`${chunks[0].where}: start has no messageId (the browser would invent one)`);
  } else if (messageId !== undefined && first.messageId !== messageId) {
    errors.push(`${chunks[0].where}: start.messageId is "${first.messageId}", not "${messageId}"`);
  }
  const last = chunks[chunks.length - 1];
  if (last.chunk.type !== 'finish' && last.chunk.type !== 'abort') {
    errors.push(`${last.where}: the last chunk is "${last.chunk.type}", not finish or abort`);
  }

  let inStep = false;
  const openText = new Set();
  const openReasoning = new Set();
  const openTools = new Set();
  let errorChunks = 0;
  const closedOpenParts = (where, at) => {
    if (openText.size) errors.push(`${where}: ${at} with text ${[...openText].join(', ')} still open`);
    if (openReasoning.size) {
      errors.push(`${where}: ${at} with reasoning ${[...openReasoning].join(', ')} still open`);
    }
  };
  for (const [index, { chunk, where }] of chunks.entries()) {
    const type = chunk.type;
    if (BATON_RECORDS.has(type) || type.startsWith('trigger:') || type.startsWith('baton')) {
      errors.push(`${where}: a baton control record reached the client: ${short(chunk)}`);
      continue;
    }
    if (!CHUNK_TYPES.has(type) && !type.startsWith('data-')) {
      errors.push(`${where}: unknown chunk type "${type}"`);
      continue;
    }
    if (type === 'start' && index > 0) {
      errors.push(`${where}: a second start (one answer is one message)`);
    }
    if ((type === 'finish' || type === 'abort') && index !== chunks.length - 1) {
      errors.push(`${where}: ${type} is not the last chunk`);
    }
    if (STEP_CHUNKS.has(type) && !inStep) errors.push(`${where}: ${type} outside a step`);
    switch (type) {
      case 'start-step':
        if (inStep) errors.push(`${where}: start-step inside an open step`);
        inStep = true;
        break;
      case 'finish-step':
        if (!inStep) errors.push(`${where}: finish-step without start-step`);
        closedOpenParts(where, 'finish-step');
        if (openTools.size) {
          errors.push(`${where}: finish-step with tool input ${[...openTools].join(', ')} still streaming`);
        }
        openText.clear();
        openReasoning.clear();
        openTools.clear();
        inStep = false;
        break;
      case 'finish':
        if (inStep) errors.push(`${where}: finish inside an open step (finish-step first)`);
        closedOpenParts(where, 'finish');
        break;
      case 'abort':
        closedOpenParts(where, 'abort');
        break;
      case 'text-start':
        if (openText.has(chunk.id)) errors.push(`${where}: text ${chunk.id} started twice`);
        openText.add(chunk.id);
        break;
      case 'text-delta':
        if (!openText.has(chunk.id)) errors.push(`${where}: text-delta for text "${chunk.id}", which is not open`);
        break;
      case 'text-end':
        if (!openText.delete(chunk.id)) errors.push(`${where}: text-end for text "${chunk.id}", which is not open`);
        break;
      case 'reasoning-start':
        if (openReasoning.has(chunk.id)) errors.push(`${where}: reasoning ${chunk.id} started twice`);
        openReasoning.add(chunk.id);
        break;
      case 'reasoning-delta':
        if (!openReasoning.has(chunk.id)) {
          errors.push(`${where}: reasoning-delta for reasoning "${chunk.id}", which is not open`);
        }
        break;
      case 'reasoning-end':
        if (!openReasoning.delete(chunk.id)) {
          errors.push(`${where}: reasoning-end for reasoning "${chunk.id}", which is not open`);
        }
        break;
      case 'tool-input-start':
        openTools.add(chunk.toolCallId);
        break;
      case 'tool-input-delta':
        if (!openTools.has(chunk.toolCallId)) {
          errors.push(`${where}: tool-input-delta for call "${chunk.toolCallId}", which is not streaming`);
        }
        break;
      case 'tool-input-available':
      case 'tool-input-error':
        openTools.delete(chunk.toolCallId);
        break;
      case 'error':
        errorChunks++;
        if (!expectError) errors.push(`${where}: an error chunk: ${short(chunk.errorText ?? chunk)}`);
        break;
      default:
        break;
    }
  }
  if (expectError && errorChunks === 0) errors.push('no error chunk, but one was expected');
  return chunks.map((c) => c.chunk);
}

function bytesStream(bytes) {
  return new ReadableStream({
    start(controller) {
      controller.enqueue(bytes);
      controller.close();
    },
  });
}

// The browser's pipeline for one major: what DefaultChatTransport and Chat do with the body.
async function foldWith(major, bytes, { message, errorTexts }) {
  const version = (await installedVersions())[major];
  const label = `ai ${version}`;
  const { parseJsonEventStream, uiMessageChunkSchema, readUIMessageStream } = await import(PACKAGES[major]);
  const errors = [];
  let chunkError;
  const chunks = parseJsonEventStream({ stream: bytesStream(bytes), schema: uiMessageChunkSchema }).pipeThrough(
    new TransformStream({
      transform(result, controller) {
        if (!result.success) {
          chunkError = result.error;
          throw result.error;
        }
        controller.enqueue(result.value);
      },
    }),
  );
  let folded;
  try {
    const start = message === undefined ? undefined : structuredClone(message);
    for await (const snapshot of readUIMessageStream({ message: start, stream: chunks, terminateOnError: true })) {
      folded = snapshot;
    }
  } catch (error) {
    const name = error?.name ?? 'Error';
    const text = String(error?.message ?? error).split('\n')[0];
    // An expected error chunk surfaces as Error(errorText): that is the browser's error state.
    const isErrorChunk = error !== chunkError && errorTexts.has(error?.message);
    if (!isErrorChunk) {
      let hint = '';
      if (major === '5' && /tool-approval-request|tool-output-denied/.test(new TextDecoder().decode(bytes))) {
        hint = ' (ai 5 has no tool approvals: check streams with approvals with --ai 6)';
      }
      errors.push(`${label}: ${name}: ${short(text, 300)}${hint}`);
    }
  }
  return { folded, errors };
}

// Reads the header block of an HTTP/1.x response (curl -D, or the head of a raw response):
// { status, headers } with lower-cased names; the last block wins (a 100 Continue first).
export function parseHead(text) {
  const blocks = text.replace(/\r\n/g, '\n').split(/\n\n+/).filter((block) => block.trim() !== '');
  const block = blocks[blocks.length - 1] ?? '';
  let status;
  const headers = {};
  for (const line of block.split('\n')) {
    const statusLine = line.match(/^HTTP\/\d(?:\.\d)?\s+(\d{3})/);
    if (statusLine) {
      status = Number(statusLine[1]);
      continue;
    }
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
  }
  return { status, headers };
}

// Splits a raw HTTP/1.1 response (bytes as read from the socket) into status, headers and body,
// undoing chunked transfer encoding. Throws on a malformed response.
export function parseRawResponse(bytes) {
  const raw = Buffer.from(bytes);
  const end = raw.indexOf('\r\n\r\n');
  if (end < 0) throw new Error('raw response: no end of the header block (\\r\\n\\r\\n)');
  const { status, headers } = parseHead(raw.subarray(0, end).toString('latin1'));
  if (status === undefined) throw new Error('raw response: no status line');
  let body = raw.subarray(end + 4);
  if (/(^|,)\s*chunked\s*$/i.test(headers['transfer-encoding'] ?? '')) {
    const parts = [];
    let at = 0;
    for (;;) {
      const lineEnd = body.indexOf('\r\n', at);
      if (lineEnd < 0) throw new Error('raw response: chunked body cut short (no chunk size line)');
      const size = parseInt(body.subarray(at, lineEnd).toString('latin1').split(';')[0], 16);
      if (!Number.isFinite(size)) throw new Error(`raw response: bad chunk size at byte ${at}`);
      at = lineEnd + 2;
      if (size === 0) break;
      if (at + size + 2 > body.length) throw new Error('raw response: chunked body cut short (a chunk)');
      parts.push(body.subarray(at, at + size));
      at += size;
      if (body.subarray(at, at + 2).toString('latin1') !== '\r\n') {
        throw new Error(`raw response: chunk not followed by CRLF at byte ${at}`);
      }
      at += 2;
    }
    body = Buffer.concat(parts);
  } else if (headers['content-length'] !== undefined) {
    const length = Number(headers['content-length']);
    if (body.length < length) throw new Error(`raw response: body has ${body.length} of ${length} bytes`);
    body = body.subarray(0, length);
  }
  return { status, headers, body: new Uint8Array(body) };
}

// body: string or bytes. options: { status, headers (lower-cased names), majors (['5','6']),
// message (the UIMessage a continuation extends), messageId, chatId, expectError, allow204 }.
export async function checkSse(body, options = {}) {
  const { status, headers, majors = ['5', '6'], message, messageId, chatId, expectError = false } = options;
  const allow204 = options.allow204 ?? false;
  const bytes = typeof body === 'string' ? new TextEncoder().encode(body) : new Uint8Array(body);
  const errors = [];
  const versions = await installedVersions();
  for (const major of majors) {
    if (!PACKAGES[major]) errors.push(`unknown ai major "${major}" (known: ${Object.keys(PACKAGES).join(', ')})`);
  }
  checkHeaders(status, headers, errors, { allow204, chatId });
  if (status === 204) {
    if (bytes.length !== 0) errors.push(`status 204 with a ${bytes.length}-byte body`);
    return { message: null, errors, chunks: [], versions };
  }

  let text;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    errors.push('framing: the body is not valid UTF-8');
    return { message: undefined, errors, chunks: [], versions };
  }
  if (text.charCodeAt(0) === 0xfeff) {
    errors.push('framing: the body starts with a byte order mark');
    text = text.slice(1);
  }
  const events = parseFraming(text, errors);
  const chunks = checkAnswer(events, errors, { expectError, messageId: messageId ?? message?.id });

  let folded;
  for (const major of [...majors].sort()) {
    if (!PACKAGES[major]) continue;
    const errorTexts = new Set(
      expectError ? chunks.filter((c) => c.type === 'error').map((c) => c.errorText) : [],
    );
    const result = await foldWith(major, bytes, { message, errorTexts });
    errors.push(...result.errors);
    folded = result.folded;
  }
  return { message: folded, errors, chunks, versions };
}
