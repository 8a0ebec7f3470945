// What the page keeps in the browser for one chat (docs/web.md):
//   the chat token   sessionStorage, so a reload keeps it; copied to localStorage (with its
//                    expiry) so that another tab of this browser opening the same chat can use it
//   the transcript   localStorage: the settled messages, and the id of the answer streaming now
//                    ("live"), which other tabs of the chat follow (their `storage` event)
// baton keeps the model's transcript in the chat's run; this copy is only what the page shows.

const tokenKey = (chatId) => `baton:token:${chatId}`;
const transcriptKey = (chatId) => `baton:chat:${chatId}`;

// Storage can be missing or throw (disabled storage, a full quota): the page then works for the
// life of the tab, as if nothing had been stored.
function read(storage, key) {
  try {
    const text = storage?.getItem(key);
    return text == null ? undefined : JSON.parse(text);
  } catch {
    return undefined;
  }
}

function write(storage, key, value) {
  try {
    storage?.setItem(key, JSON.stringify(value));
  } catch (error) {
    console.warn(`baton: could not store ${key}: ${error.message}`);
  }
}

function forget(storage, key) {
  try {
    storage?.removeItem(key);
  } catch {
    // nothing to forget
  }
}

function usable(entry, now) {
  return (
    entry != null &&
    typeof entry.token === 'string' &&
    entry.token !== '' &&
    (typeof entry.expiresAt !== 'number' || entry.expiresAt > now)
  );
}

export class ChatStore {
  constructor(chatId, { session, local, now = () => Date.now(), target } = {}) {
    this.chatId = chatId;
    this.session = session;
    this.local = local;
    this.now = now;
    this.target = target;
  }

  // The chat token, or undefined when the page has none that is still valid.
  token() {
    const now = this.now();
    for (const storage of [this.session, this.local]) {
      const entry = read(storage, tokenKey(this.chatId));
      if (usable(entry, now)) return entry.token;
      if (entry !== undefined) forget(storage, tokenKey(this.chatId));
    }
    return undefined;
  }

  // Keeps a token the gateway issued (x-baton-chat-token, x-baton-chat-token-expires in unix ms).
  saveToken(token, expiresAt) {
    const entry = { token };
    if (Number.isFinite(expiresAt) && expiresAt > 0) entry.expiresAt = expiresAt;
    write(this.session, tokenKey(this.chatId), entry);
    write(this.local, tokenKey(this.chatId), entry);
  }

  // { messages, live } as last saved by any tab of this chat, or undefined.
  transcript() {
    const value = read(this.local, transcriptKey(this.chatId));
    if (value == null || !Array.isArray(value.messages)) return undefined;
    return { messages: value.messages, live: typeof value.live === 'string' ? value.live : null };
  }

  saveTranscript(messages, live = null) {
    write(this.local, transcriptKey(this.chatId), { messages, live });
  }

  // Calls `listener({messages, live})` when another tab saves this chat's transcript.
  onTranscriptFromOtherTab(listener) {
    const key = transcriptKey(this.chatId);
    this.target?.addEventListener('storage', (event) => {
      if (event.key !== key || event.newValue == null) return;
      try {
        const value = JSON.parse(event.newValue);
        if (Array.isArray(value?.messages)) {
          listener({
            messages: value.messages,
            live: typeof value.live === 'string' ? value.live : null,
          });
        }
      } catch {
        // another writer's garbage: ignore it
      }
    });
  }
}
