import { h } from "./dom";
import type { ChatMessage, Role } from "./protocol";

/**
 * The message log: one element per message id, in order of arrival. Confirmed messages go
 * above the visitor's pending ones, which stay at the bottom until the server has them.
 * Text is only ever set through textContent.
 */
export class MessageList {
  readonly element: HTMLElement;
  private readonly byId = new Map<string, HTMLElement>();
  private readonly streams = new Map<string, HTMLElement>();

  constructor() {
    this.element = h("div", {
      class: "log",
      role: "log",
      "aria-live": "polite",
      "aria-label": "Messages",
      "data-sb": "log",
      tabindex: "0",
    });
  }

  has(id: string): boolean {
    return this.byId.has(id);
  }

  /** Add a message unless its id is known; a bot answer replaces its streamed text. Returns true if new. */
  add(message: ChatMessage, pending = false): boolean {
    if (this.byId.has(message.id)) {
      if (message.request_id) this.dropStream(message.request_id);
      return false;
    }
    const streamed = message.request_id ? this.streams.get(message.request_id) : undefined;
    if (streamed && message.request_id) {
      this.streams.delete(message.request_id);
      streamed.removeAttribute("data-streaming");
      streamed.removeAttribute("aria-busy");
      streamed.dataset["id"] = message.id;
      streamed.dataset["role"] = message.role;
      streamed.textContent = message.text;
      this.byId.set(message.id, streamed);
      return true;
    }
    const element = bubble(message.role, message.text);
    element.dataset["id"] = message.id;
    if (message.request_id) element.dataset["requestId"] = message.request_id;
    if (pending) element.toggleAttribute("data-pending", true);
    this.byId.set(message.id, element);
    this.insert(element, pending);
    return true;
  }

  /** The server acknowledged a pending message: it now has the server's id. */
  confirm(clientId: string, messageId: string): void {
    const element = this.byId.get(clientId);
    if (!element) return;
    const echo = this.byId.get(messageId);
    if (echo && echo !== element) echo.remove();
    this.byId.delete(clientId);
    this.byId.set(messageId, element);
    element.dataset["id"] = messageId;
    element.removeAttribute("data-pending");
    // It may have waited below messages that arrived meanwhile; confirmed ones keep arrival order.
    this.insert(element, false);
  }

  /** The server refused a message for good. */
  fail(clientId: string): void {
    const element = this.byId.get(clientId);
    if (!element) return;
    element.removeAttribute("data-pending");
    element.toggleAttribute("data-failed", true);
  }

  delta(requestId: string, text: string): void {
    let element = this.streams.get(requestId);
    if (!element) {
      element = bubble("bot", "");
      element.dataset["requestId"] = requestId;
      element.toggleAttribute("data-streaming", true);
      element.setAttribute("aria-busy", "true");
      this.streams.set(requestId, element);
      this.insert(element, false);
    }
    element.append(document.createTextNode(text));
    element.normalize();
    this.scroll();
  }

  reset(requestId: string): void {
    const element = this.streams.get(requestId);
    if (element) element.textContent = "";
  }

  /** The application's greeting, shown first in a conversation that has no messages yet. */
  welcome(text: string | undefined): void {
    const shown = this.element.querySelector(":scope > [data-sb=welcome]");
    if (!text || shown || this.byId.size > 0) return;
    const element = h("div", { class: "msg", "data-sb": "welcome", "data-role": "bot" });
    element.textContent = text;
    this.element.prepend(element);
  }

  /** Forget every confirmed message (a new conversation); pending ones stay to be sent. */
  clear(): void {
    for (const [id, element] of this.byId) {
      if (!element.hasAttribute("data-pending")) {
        element.remove();
        this.byId.delete(id);
      }
    }
    for (const requestId of [...this.streams.keys()]) this.dropStream(requestId);
  }

  private dropStream(requestId: string): void {
    this.streams.get(requestId)?.remove();
    this.streams.delete(requestId);
  }

  private insert(element: HTMLElement, pending: boolean): void {
    const stick = this.nearBottom();
    const firstPending = pending ? null : this.element.querySelector(":scope > [data-pending]");
    if (firstPending && firstPending !== element) this.element.insertBefore(element, firstPending);
    else if (!element.isConnected || pending) this.element.append(element);
    if (stick || pending) this.scroll();
  }

  private nearBottom(): boolean {
    const log = this.element;
    return log.scrollHeight - log.scrollTop - log.clientHeight < 80;
  }

  scroll(): void {
    this.element.scrollTop = this.element.scrollHeight;
  }
}

function bubble(role: Role, text: string): HTMLElement {
  const element = h("div", { class: "msg", "data-sb": "message", "data-role": role });
  element.textContent = text;
  return element;
}
