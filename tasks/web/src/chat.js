// A Chat for pages without a framework: the `ai` package's AbstractChat (all of the chat's
// logic: requests, streaming, resume, tool approvals) over a state object that tells its
// subscribers when anything changed. This is what @ai-sdk/react's Chat adds for React, minus
// React.
import { AbstractChat } from 'ai';

// The ChatState AbstractChat reads and writes. Every write replaces the messages array (and the
// one message written), so a subscriber can tell changed messages apart by identity.
class ObservableChatState {
  #messages;
  #status = 'ready';
  #error = undefined;
  #listeners = new Set();

  constructor(messages) {
    this.#messages = messages;
  }

  get messages() {
    return this.#messages;
  }
  set messages(messages) {
    this.#messages = [...messages];
    this.#changed();
  }
  get status() {
    return this.#status;
  }
  set status(status) {
    this.#status = status;
    this.#changed();
  }
  get error() {
    return this.#error;
  }
  set error(error) {
    this.#error = error;
    this.#changed();
  }

  pushMessage = (message) => {
    this.#messages = [...this.#messages, message];
    this.#changed();
  };
  popMessage = () => {
    this.#messages = this.#messages.slice(0, -1);
    this.#changed();
  };
  replaceMessage = (index, message) => {
    const messages = [...this.#messages];
    // A copy: the chat goes on mutating the message it streams into.
    messages[index] = this.snapshot(message);
    this.#messages = messages;
    this.#changed();
  };
  snapshot = (value) => structuredClone(value);

  subscribe(listener) {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #changed() {
    for (const listener of this.#listeners) listener();
  }
}

export class Chat extends AbstractChat {
  #state;

  constructor({ messages = [], ...options }) {
    const state = new ObservableChatState(messages);
    super({ ...options, state });
    this.#state = state;
  }

  // Calls `listener` after every change of messages, status or error. Returns the unsubscribe.
  subscribe(listener) {
    return this.#state.subscribe(listener);
  }
}
