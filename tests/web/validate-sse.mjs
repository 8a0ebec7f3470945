#!/usr/bin/env node
// Checks one SSE response of baton-gateway as the browser reads it, with every `ai` major
// installed here, and against the gateway's rules (lib/sse-check.mjs; docs/web.md).
//
//   node validate-sse.mjs [BODY|-] [--headers FILE] [--raw FILE] [--ai 5,6]
//                         [--message FILE] [--message-id ID] [--chat-id ID]
//                         [--expect-error] [--allow-204]
//
//   BODY          the response body (a file; "-" or nothing: stdin)
//   --headers     the response head as `curl -D` writes it (status line, "Name: value" lines)
//   --raw         instead of BODY and --headers: the whole HTTP/1.1 response as read from the
//                 socket (chunked transfer encoding is undone)
//   --ai          the majors to check with (default 5,6); streams with tool approvals: 6
//   --message     a JSON file with the UIMessage the answer continues (an approval or tool
//                 output POST): the browser folds the answer into it
//   --message-id  the id start.messageId must have (default: --message's id)
//   --chat-id     the x-baton-chat-id header must say this
//   --expect-error  the answer must carry an error chunk (a failed turn)
//   --allow-204   a 204 with an empty body passes (GET .../stream with nothing in flight)
//
// Exit 0: valid; prints the final UIMessage as one line of JSON (null for a 204).
// Exit 1: invalid; prints each problem on stderr. Exit 2: bad arguments or unreadable input.
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { checkSse, parseHead, parseRawResponse } from './lib/sse-check.mjs';

function fail(message) {
  process.stderr.write(`validate-sse: ${message}\n`);
  process.exit(2);
}

async function readStdin() {
  const parts = [];
  for await (const part of process.stdin) parts.push(part);
  return new Uint8Array(Buffer.concat(parts));
}

let values;
let positionals;
try {
  ({ values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      headers: { type: 'string' },
      raw: { type: 'string' },
      ai: { type: 'string', default: '5,6' },
      message: { type: 'string' },
      'message-id': { type: 'string' },
      'chat-id': { type: 'string' },
      'expect-error': { type: 'boolean', default: false },
      'allow-204': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  }));
} catch (error) {
  fail(error.message);
}
if (values.help) {
  process.stdout.write('usage: node validate-sse.mjs [BODY|-] [--headers FILE] [--raw FILE] [--ai 5,6] ' +
    '[--message FILE] [--message-id ID] [--chat-id ID] [--expect-error] [--allow-204]\n');
  process.exit(0);
}
if (positionals.length > 1) fail(`one body at most, got ${positionals.length}`);
if (values.raw !== undefined && (positionals.length > 0 || values.headers !== undefined)) {
  fail('--raw is the whole response: give no BODY and no --headers with it');
}

let body;
let status;
let headers;
try {
  if (values.raw !== undefined) {
    ({ status, headers, body } = parseRawResponse(await readFile(values.raw)));
  } else {
    const source = positionals[0] ?? '-';
    body = source === '-' ? await readStdin() : new Uint8Array(await readFile(source));
    if (values.headers !== undefined) {
      ({ status, headers } = parseHead(await readFile(values.headers, 'latin1')));
      if (status === undefined) fail(`${values.headers}: no status line`);
    }
  }
} catch (error) {
  fail(error.message);
}

let message;
if (values.message !== undefined) {
  try {
    message = JSON.parse(await readFile(values.message, 'utf8'));
  } catch (error) {
    fail(`--message ${values.message}: ${error.message}`);
  }
}

const majors = values.ai.split(',').map((major) => major.trim()).filter(Boolean);
const result = await checkSse(body, {
  status,
  headers,
  majors,
  message,
  messageId: values['message-id'],
  chatId: values['chat-id'],
  expectError: values['expect-error'],
  allow204: values['allow-204'],
});
if (result.errors.length > 0) {
  const checked = majors.map((major) => `ai ${result.versions[major] ?? major}`).join(', ');
  process.stderr.write(`validate-sse: INVALID (checked with ${checked})\n`);
  for (const error of result.errors) process.stderr.write(`  ${error}\n`);
  process.exit(1);
}
process.stdout.write(`${JSON.stringify(result.message)}\n`);
