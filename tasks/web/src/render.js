// Renders UI messages into plain DOM. Text goes in as text nodes, never as HTML. The data-
// attributes are the page's contract with its browser test (tests/web/browser-test.mjs).

// The per-turn timings of message.metadata.baton.timings, in the order of a turn.
export const TIMINGS = [
  ['queued', 'queued'],
  ['boot', 'boot'],
  ['hooks', 'hooks'],
  ['handover', 'handover'],
  ['modelFirstByte', 'model first byte'],
  ['firstChunkOut', 'first chunk out'],
  ['tools', 'tools'],
  ['turn', 'turn'],
];

const TOOL_STATES = {
  'input-streaming': 'preparing',
  'input-available': 'running',
  'approval-requested': 'needs your approval',
  'approval-responded': 'answered',
  'output-available': 'done',
  'output-error': 'failed',
  'output-denied': 'denied',
};

export function h(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') {
      node.addEventListener(name.slice(2), value);
    } else {
      node.setAttribute(name, value === true ? '' : String(value));
    }
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

export function formatMs(value) {
  if (value < 10) return `${(Math.round(value * 10) / 10).toFixed(1)} ms`;
  return `${Math.round(value).toLocaleString('en-US')} ms`;
}

// JSON on one line when it is short, indented when it is not.
function json(value) {
  if (value === undefined) return '';
  const line = JSON.stringify(value);
  return line.length <= 72 ? line : JSON.stringify(value, null, 2);
}

function toolName(part) {
  return part.type === 'dynamic-tool' ? part.toolName : part.type.slice('tool-'.length);
}

function isToolPart(part) {
  return part.type === 'dynamic-tool' || part.type.startsWith('tool-');
}

function renderTool(part, { onApproval }) {
  const name = toolName(part);
  let state = TOOL_STATES[part.state] ?? part.state;
  if (part.state === 'approval-responded') state = part.approval?.approved ? 'approved' : 'denied';
  const fields = [
    h('dt', {}, 'Input'),
    h('dd', {}, h('pre', { 'data-field': 'input' }, json(part.input))),
  ];
  if (part.state === 'output-available') {
    fields.push(
      h('dt', {}, 'Result'),
      h('dd', {}, h('pre', { 'data-field': 'output' }, json(part.output))),
    );
  } else if (part.state === 'output-error') {
    fields.push(
      h('dt', {}, 'Error'),
      h('dd', {}, h('pre', { 'data-field': 'error' }, part.errorText ?? '')),
    );
  }
  const section = h(
    'section',
    {
      class: 'part tool',
      'data-part': 'tool',
      'data-tool-name': name,
      'data-tool-call-id': part.toolCallId,
      'data-state': part.state,
      'aria-label': `Tool call ${name}`,
    },
    h('header', {}, h('span', { class: 'tool-name' }, name), ' ', h('span', { class: 'tool-state' }, state)),
    h('dl', {}, fields),
  );
  if (part.state === 'approval-requested' && part.approval?.id) {
    const answer = (approved) => (event) => {
      for (const button of section.querySelectorAll('button')) button.disabled = true;
      event.preventDefault();
      onApproval(part.approval.id, approved);
    };
    section.append(
      h(
        'div',
        { class: 'approval', role: 'group', 'aria-label': `Approve ${name}?` },
        h('span', {}, `Run ${name}?`),
        h('button', { type: 'button', 'data-action': 'approve', onclick: answer(true) }, 'Approve'),
        h('button', { type: 'button', 'data-action': 'deny', onclick: answer(false) }, 'Deny'),
      ),
    );
  }
  if (part.state === 'output-denied' || (part.state === 'approval-responded' && !part.approval?.approved)) {
    section.append(h('p', { class: 'denied', 'data-field': 'denied' }, 'You denied this call.'));
  }
  return section;
}

function safeUrl(url) {
  try {
    const parsed = new URL(url, location.href);
    return parsed.protocol === 'https:' || parsed.protocol === 'http:' ? parsed.href : undefined;
  } catch {
    return undefined;
  }
}

export function renderPart(part, context) {
  switch (part.type) {
    case 'text':
      return h('div', { class: 'part text', 'data-part': 'text', 'data-state': part.state }, part.text);
    case 'reasoning': {
      const key = `${context.messageId}:${context.index}`;
      const details = h(
        'details',
        {
          class: 'part reasoning',
          'data-part': 'reasoning',
          'data-state': part.state,
          open: context.openReasoning.has(key) || part.state === 'streaming',
          ontoggle: (event) => {
            if (event.target.open) context.openReasoning.add(key);
            else context.openReasoning.delete(key);
          },
        },
        h('summary', {}, 'Reasoning'),
        h('div', { class: 'reasoning-text' }, part.text),
      );
      return details;
    }
    case 'step-start':
      return context.index === 0 ? null : h('hr', { class: 'step', 'data-part': 'step' });
    case 'source-url': {
      const href = safeUrl(part.url);
      return h(
        'p',
        { class: 'part source', 'data-part': 'source' },
        'Source: ',
        href ? h('a', { href, rel: 'noopener noreferrer', target: '_blank' }, part.title ?? href) : part.url,
      );
    }
    case 'file':
      return h('p', { class: 'part file', 'data-part': 'file' }, `File: ${part.filename ?? part.mediaType}`);
    default:
      if (isToolPart(part)) return renderTool(part, context);
      // data- parts and anything newer: shown small, never interpreted.
      if (part.type.startsWith('data-')) {
        return h('pre', { class: 'part data', 'data-part': part.type }, json(part.data));
      }
      return null;
  }
}

export function renderTimings(timings) {
  if (timings == null || typeof timings !== 'object') return null;
  const known = new Set(TIMINGS.map(([key]) => key));
  const rows = [
    ...TIMINGS.map(([key, label]) => [key, label]),
    ...Object.keys(timings)
      .filter((key) => !known.has(key))
      .map((key) => [key, key]),
  ]
    .filter(([key]) => typeof timings[key] === 'number' && Number.isFinite(timings[key]))
    .map(([key, label]) =>
      h('div', { 'data-timing': key }, h('dt', {}, label), h('dd', {}, formatMs(timings[key]))),
    );
  if (rows.length === 0) return null;
  return h('dl', { class: 'timings', 'data-timings': '', 'aria-label': 'Timings of this turn' }, rows);
}

export function renderMessage(message, context) {
  const parts = message.parts
    .map((part, index) => renderPart(part, { ...context, messageId: message.id, index }))
    .filter(Boolean);
  return h(
    'li',
    {
      class: `message ${message.role}`,
      'data-role': message.role,
      'data-message-id': message.id,
    },
    h('h2', { class: 'visually-hidden' }, message.role === 'user' ? 'You' : 'Assistant'),
    h('div', { class: 'parts' }, parts),
    message.role === 'assistant' ? renderTimings(message.metadata?.baton?.timings) : null,
  );
}

// Keeps `list` in step with `messages`: a message object that did not change keeps its node
// (so focus and open <details> survive a stream), a changed one gets a new node.
export class MessageList {
  #list;
  #context;
  #nodes = new Map(); // message id -> { message, node }

  constructor(list, context) {
    this.#list = list;
    this.#context = { openReasoning: new Set(), ...context };
  }

  render(messages) {
    const nodes = new Map();
    messages.forEach((message, index) => {
      const old = this.#nodes.get(message.id);
      const node =
        old && old.message === message ? old.node : renderMessage(message, this.#context);
      nodes.set(message.id, { message, node });
      const current = this.#list.children[index];
      if (current !== node) this.#list.insertBefore(node, current ?? null);
    });
    while (this.#list.children.length > messages.length) this.#list.lastElementChild.remove();
    this.#nodes = nodes;
  }
}
