// What the page keeps in the browser (src/store.js): the chat token with its expiry, and the
// transcript other tabs of the chat follow.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ChatStore } from '../src/store.js';

class FakeStorage {
  items = new Map();
  getItem(key) {
    return this.items.has(key) ? this.items.get(key) : null;
  }
  setItem(key, value) {
    this.items.set(key, String(value));
  }
  removeItem(key) {
    this.items.delete(key);
  }
}

function stores(now = () => 1000) {
  const session = new FakeStorage();
  const local = new FakeStorage();
  const target = new EventTarget();
  return { session, local, target, store: new ChatStore('c1', { session, local, now, target }) };
}

test('a token is kept per tab and for other tabs of the chat, until it expires', () => {
  let now = 1000;
  const { session, local, store } = stores(() => now);
  assert.equal(store.token(), undefined);
  store.saveToken('tok_1', 5000);
  assert.equal(store.token(), 'tok_1');
  // A second tab has its own sessionStorage, and finds the token in localStorage.
  const other = new ChatStore('c1', { session: new FakeStorage(), local, now: () => now });
  assert.equal(other.token(), 'tok_1');
  // Another chat's token is not this chat's.
  assert.equal(new ChatStore('c2', { session, local, now: () => now }).token(), undefined);
  now = 5000;
  assert.equal(store.token(), undefined, 'an expired token is not sent');
  assert.equal(session.items.size + local.items.size, 0, 'and is forgotten');
});

test('a token without an expiry header is kept', () => {
  const { store } = stores();
  store.saveToken('tok_2', Number(null));
  assert.equal(store.token(), 'tok_2');
  store.saveToken('tok_3', NaN);
  assert.equal(store.token(), 'tok_3');
});

test('storage that throws or holds garbage is survived', () => {
  const broken = {
    getItem() {
      throw new Error('denied');
    },
    setItem() {
      throw new Error('quota');
    },
    removeItem() {
      throw new Error('denied');
    },
  };
  const warn = console.warn;
  console.warn = () => {};
  try {
    const store = new ChatStore('c1', { session: broken, local: broken });
    store.saveToken('tok', 1e15);
    store.saveTranscript([], null);
    assert.equal(store.token(), undefined);
    assert.equal(store.transcript(), undefined);
  } finally {
    console.warn = warn;
  }
  const { local, store } = stores();
  local.setItem('baton:chat:c1', '{not json');
  assert.equal(store.transcript(), undefined);
  local.setItem('baton:chat:c1', '{"messages": 3}');
  assert.equal(store.transcript(), undefined);
});

test('the transcript, and its changes from other tabs of the same chat only', () => {
  const { store, target } = stores();
  const messages = [{ id: 'u1', role: 'user', parts: [{ type: 'text', text: 'hi' }] }];
  store.saveTranscript(messages, 'msg_A');
  assert.deepEqual(store.transcript(), { messages, live: 'msg_A' });
  const seen = [];
  store.onTranscriptFromOtherTab((transcript) => seen.push(transcript));
  const event = (key, newValue) => Object.assign(new Event('storage'), { key, newValue });
  target.dispatchEvent(event('baton:chat:c2', JSON.stringify({ messages: [], live: null })));
  target.dispatchEvent(event('baton:chat:c1', null));
  target.dispatchEvent(event('baton:chat:c1', 'garbage'));
  target.dispatchEvent(event('baton:chat:c1', JSON.stringify({ messages, live: 'msg_B' })));
  assert.deepEqual(seen, [{ messages, live: 'msg_B' }]);
});
