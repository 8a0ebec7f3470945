// baton's demo chat page: the `ai` package's Chat logic and DefaultChatTransport, talking to
// baton-gateway exactly as a useChat app does, plus the few baton-specific things a demo needs
// (docs/web.md): the chat token from the first answer's header, an explicit stop, and other
// tabs of the same chat following its answers.
import { DefaultChatTransport, lastAssistantMessageIsCompleteWithApprovalResponses } from 'ai';
import { Chat } from './chat.js';
import { MessageList } from './render.js';
import { ChatStore } from './store.js';

const $ = (selector) => document.querySelector(selector);

// The gateway's chat route; the build writes it into index.html (<meta name="baton-api">).
// Never taken from the URL: a link could otherwise send this chat's token elsewhere.
const api = $('meta[name="baton-api"]')?.content || '/api/chat';

// The chat id is the page's address (?chat=<id>): a reload or a second tab opens the same chat.
function chatIdFromUrl() {
  const url = new URL(location.href);
  const id = url.searchParams.get('chat');
  if (id && id !== '.' && id !== '..' && id.length <= 200) return id;
  const fresh = `c-${crypto.randomUUID()}`;
  url.searchParams.set('chat', fresh);
  history.replaceState(null, '', url);
  return fresh;
}

const chatId = chatIdFromUrl();
const agent = new URL(location.href).searchParams.get('agent') || undefined;
const chatUrl = (path) => `${api}/${encodeURIComponent(chatId)}/${path}`;
const store = new ChatStore(chatId, {
  session: globalThis.sessionStorage,
  local: globalThis.localStorage,
  target: window,
});

function authHeaders() {
  const token = store.token();
  return token ? { authorization: `Bearer ${token}` } : {};
}

const transport = new DefaultChatTransport({
  api,
  // Functions are evaluated per request: the token learnt from one answer goes on every later
  // POST and on GET {api}/{id}/stream.
  headers: authHeaders,
  body: () => (agent ? { agent } : {}),
  // The gateway issues the chat token on the chat's first POST (and a renewed one later) in
  // response headers; a fetch wrapper is the transport's way to read them.
  fetch: async (input, init) => {
    const response = await fetch(input, init);
    const token = response.headers.get('x-baton-chat-token');
    if (token) store.saveToken(token, Number(response.headers.get('x-baton-chat-token-expires')));
    return response;
  },
});

const saved = store.transcript();
const chat = new Chat({
  id: chatId,
  messages: saved?.messages ?? [],
  transport,
  // After the last approval of a step is answered, the chat sends the answers on its own.
  sendAutomaticallyWhen: lastAssistantMessageIsCompleteWithApprovalResponses,
});

// ---- rendering ---------------------------------------------------------------------------

const root = $('#chat');
const input = $('#input');
const sendButton = $('#send');
const stopButton = $('#stop');
const statusLine = $('#status');
const errorBox = $('#error');
const list = new MessageList($('#messages'), {
  onApproval: (id, approved) => chat.addToolApprovalResponse({ id, approved }),
});
const STATUS_TEXT = {
  loading: 'Loading…',
  ready: 'Ready',
  submitted: 'Sending…',
  streaming: 'Answering…',
  error: 'Error',
};
let stopError = undefined;

// The gateway answers errors as JSON {"error": {"code", "message"}}; the transport hands over
// the body text as the error's message.
function describe(error) {
  try {
    const body = JSON.parse(error.message);
    if (body?.error?.message) return `${body.error.message} (${body.error.code ?? 'error'})`;
  } catch {
    // not JSON: shown as it is
  }
  return error.message || String(error);
}

function busy() {
  return chat.status === 'submitted' || chat.status === 'streaming';
}

// Until the first resumeStream() has asked the gateway, the page does not know whether an
// answer is in flight, and a message sent meanwhile would race it: "loading".
let loading = true;

function shownStatus() {
  return loading && !busy() ? 'loading' : chat.status;
}

// New text keeps the newest message in view, unless the reader scrolled up to read.
function nearBottom() {
  const page = document.scrollingElement;
  return page.scrollHeight - page.scrollTop - page.clientHeight < 80;
}

function render() {
  const follow = nearBottom();
  list.render(chat.messages);
  const status = shownStatus();
  root.dataset.chatStatus = status;
  root.setAttribute('aria-busy', status === 'ready' || status === 'error' ? 'false' : 'true');
  statusLine.textContent = STATUS_TEXT[status] ?? status;
  sendButton.disabled = status !== 'ready' && status !== 'error';
  stopButton.disabled = !busy();
  const error = chat.error ? describe(chat.error) : stopError;
  errorBox.hidden = !error;
  errorBox.textContent = error ?? '';
  if (follow) $('#composer').scrollIntoView({ block: 'end' });
}

let renderQueued = false;
function scheduleRender() {
  if (renderQueued) return;
  renderQueued = true;
  queueMicrotask(() => {
    renderQueued = false;
    render();
  });
}

// ---- other tabs of this chat -------------------------------------------------------------
//
// Each tab saves the transcript when a turn is sent, starts streaming, and settles. The save
// at "streaming" names the answer in flight ("live"): a tab that is idle then calls
// resumeStream(), the AI SDK's own GET {api}/{id}/stream, and so streams the same answer from
// the gateway. A save at "settled" gives an idle tab the finished transcript (in case it came
// too late for the stream). No polling, and nothing the gateway must add.

let previousStatus = chat.status;
let messagesAtSend = chat.messages;
let pending = undefined; // the latest transcript of another tab, while this one is busy

function followLiveAnswer(live) {
  if (live && !busy() && !chat.messages.some((message) => message.id === live)) {
    chat.resumeStream();
  }
}

function adopt(transcript) {
  if (JSON.stringify(transcript.messages) !== JSON.stringify(chat.messages)) {
    chat.messages = transcript.messages;
  }
  followLiveAnswer(transcript.live);
}

store.onTranscriptFromOtherTab((transcript) => {
  if (busy()) pending = transcript;
  else adopt(transcript);
});

function onStatusChange(status) {
  if (status === 'submitted') {
    messagesAtSend = chat.messages;
    store.saveTranscript(messagesAtSend, null);
  } else if (status === 'streaming') {
    const live = chat.lastMessage?.role === 'assistant' ? chat.lastMessage.id : null;
    // The answer itself stays out until it settles: other tabs stream it from the gateway.
    store.saveTranscript(
      messagesAtSend.filter((message) => message.id !== live),
      live,
    );
  } else {
    // Settled (ready or error): this tab's view of the answer it streamed is the newest.
    store.saveTranscript(chat.messages, null);
    const other = pending;
    pending = undefined;
    if (other) followLiveAnswer(other.live);
  }
}

chat.subscribe(() => {
  if (chat.status !== previousStatus) {
    previousStatus = chat.status;
    onStatusChange(chat.status);
  }
  scheduleRender();
});

// ---- user actions ------------------------------------------------------------------------

$('#composer').addEventListener('submit', (event) => {
  event.preventDefault();
  const text = input.value.trim();
  if (!text || busy() || loading) return;
  input.value = '';
  stopError = undefined;
  chat.sendMessage({ text });
});

input.addEventListener('keydown', (event) => {
  if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    $('#composer').requestSubmit();
  }
});

// Aborting the fetch (chat.stop()) does not stop a baton turn: the gateway goes on with it for
// other readers. The explicit stop does, from any tab.
stopButton.addEventListener('click', async () => {
  stopError = undefined;
  const stopping = chat.stop();
  try {
    const response = await fetch(chatUrl('stop'), { method: 'POST', headers: authHeaders() });
    if (!response.ok) stopError = `Stop failed: ${describe(new Error(await response.text()))}`;
  } catch (error) {
    stopError = `Stop failed: ${error.message}`;
  }
  await stopping;
  scheduleRender();
});

$('#chat-id').textContent = chatId;
render();
input.focus();

// A reload mid-answer picks the answer up again (204 when nothing is in flight), as
// useChat({resume: true}) does on mount.
chat.resumeStream().finally(() => {
  loading = false;
  scheduleRender();
});
