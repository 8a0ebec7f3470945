// Proves that fake-llm speaks the real wire formats: the official client SDKs from npm
// (@anthropic-ai/sdk and openai) stream every response of script.json from a fake-llm process
// and must parse each one as intended. Run by ctest as provider_sdk_test:
//   node check.mjs <path to fake-llm> <script.json>
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';

const [fakeLlm, script] = process.argv.slice(2);
const server = spawn(fakeLlm, ['--script', script], { stdio: ['ignore', 'pipe', 'inherit'] });
const base = await new Promise((resolve, reject) => {
  let out = '';
  server.stdout.on('data', (d) => {
    out += d;
    const m = out.match(/listening (\S+)/);
    if (m) resolve(m[1]);
  });
  server.on('exit', (code) => reject(new Error(`fake-llm exited with ${code} before listening`)));
});

const anthropic = new Anthropic({ apiKey: 'sk-ant-test', baseURL: base, maxRetries: 0 });
const openai = new OpenAI({ apiKey: 'sk-test', baseURL: `${base}/v1`, maxRetries: 0 });
const tools = [{ name: 'get_weather', description: 'Weather', input_schema: { type: 'object' } }];
const ask = (text) => ({
  model: 'm', max_tokens: 1024, tools, messages: [{ role: 'user', content: text }],
});
const chat = (text) => ({ model: 'm', messages: [{ role: 'user', content: text }] });

let failures = 0;
async function check(name, fn) {
  try {
    await fn();
    console.log(`ok   ${name}`);
  } catch (e) {
    failures++;
    console.log(`FAIL ${name}: ${e.stack || e}`);
  }
}

await check('anthropic: V1 plain text, raw events and the final message', async () => {
  const stream = anthropic.messages.stream(ask('case:v1'));
  const types = [];
  for await (const event of stream) types.push(event.type);
  const message = await stream.finalMessage();
  assert.deepEqual(types, ['message_start', 'content_block_start', 'content_block_delta',
    'content_block_delta', 'content_block_stop', 'message_delta', 'message_stop']);
  assert.equal(message.content.length, 1);
  assert.equal(message.content[0].type, 'text');
  assert.equal(message.content[0].text, 'Hi there.');
  assert.equal(message.stop_reason, 'end_turn');
  assert.equal(message.usage.output_tokens, 5);
  assert.equal(message.id, 'msg_p1');
});

await check('anthropic: rendered reply with signed thinking, text and a tool call', async () => {
  const message = await anthropic.messages.stream(ask('case:anthropic-reply')).finalMessage();
  const [thinking, text, tool] = message.content;
  assert.equal(thinking.type, 'thinking');
  assert.equal(thinking.thinking, 'Need live data.');
  assert.equal(thinking.signature, 'c2lnLWV4YW1wbGU=');
  assert.equal(text.type, 'text');
  assert.equal(text.text, 'Checking the weather.');
  assert.equal(tool.type, 'tool_use');
  assert.equal(tool.id, 'toolu_01');
  assert.equal(tool.name, 'get_weather');
  assert.deepEqual(tool.input, { city: 'Oslo' });
  assert.equal(message.stop_reason, 'tool_use');
  assert.equal(message.usage.output_tokens, 30);
});

await check('anthropic: HTTP 529 is an APIError with the overloaded body', async () => {
  await assert.rejects(anthropic.messages.create({ ...ask('case:anthropic-529'), stream: true }),
    (e) => e.status === 529 && e.error?.error?.type === 'overloaded_error');
});

await check('anthropic: an error event after output fails the stream', async () => {
  const stream = anthropic.messages.stream(ask('case:anthropic-stream-error'));
  let text = '';
  stream.on('text', (t) => { text += t; });
  await assert.rejects(stream.finalMessage(), (e) => /Overloaded|overloaded/.test(String(e.message)));
  assert.equal(text, 'Hi ');
});

await check('openai: V2 plain text with a usage chunk', async () => {
  const stream = await openai.chat.completions.create({ ...chat('case:v2'), stream: true,
    stream_options: { include_usage: true } });
  let content = '';
  let finish = null;
  let usage = null;
  for await (const chunk of stream) {
    if (chunk.choices[0]?.delta?.content) content += chunk.choices[0].delta.content;
    if (chunk.choices[0]?.finish_reason) finish = chunk.choices[0].finish_reason;
    if (chunk.usage) usage = chunk.usage;
  }
  assert.equal(content, 'Hello');
  assert.equal(finish, 'stop');
  assert.equal(usage.total_tokens, 7);
});

await check('openai: V4 parallel tool calls assembled by the SDK', async () => {
  const stream = openai.chat.completions.stream({ ...chat('case:v4') });
  const completion = await stream.finalChatCompletion();
  const calls = completion.choices[0].message.tool_calls;
  assert.equal(completion.choices[0].finish_reason, 'tool_calls');
  assert.equal(calls.length, 2);
  assert.equal(calls[0].id, 'call_a');
  assert.equal(calls[0].function.name, 'get_weather');
  assert.equal(calls[0].function.arguments, '{"city":"Oslo"}');
  assert.equal(calls[1].id, 'call_b');
  assert.equal(calls[1].function.arguments, '{"tz":"CET"}');
});

await check('openai: rendered reply with text, a tool call and usage', async () => {
  const stream = openai.chat.completions.stream({ ...chat('case:openai-reply'),
    stream_options: { include_usage: true } });
  const completion = await stream.finalChatCompletion();
  const message = completion.choices[0].message;
  assert.equal(message.content, 'It is 4 degrees.');
  assert.equal(message.tool_calls[0].id, 'call_1');
  assert.deepEqual(JSON.parse(message.tool_calls[0].function.arguments), { city: 'Oslo' });
  assert.equal(completion.choices[0].finish_reason, 'tool_calls');
  assert.equal(completion.usage.prompt_tokens, 12);
});

await check('openai: HTTP 429 is a RateLimitError with retry-after', async () => {
  await assert.rejects(openai.chat.completions.create({ ...chat('case:openai-429'), stream: true }),
    (e) => e.status === 429 && e.headers?.get?.('retry-after') === '1' &&
      e.error?.code === 'rate_limit_exceeded');
});

await check('fake-llm recorded what the SDKs sent', async () => {
  const recorded = await (await fetch(`${base}/__fake/requests`)).json();
  assert.equal(recorded.length, 8);
  assert.equal(recorded[0].path, '/v1/messages');
  assert.equal(recorded[0].json.stream, true);
  assert.equal(recorded[4].path, '/v1/chat/completions');
  assert.equal(recorded[4].json.stream, true);
});

server.kill('SIGTERM');
if (failures > 0) {
  console.log(`${failures} check(s) failed`);
  process.exit(1);
}
console.log('all SDK checks passed');
