import { CHAT_ICON, CLOSE_ICON, h, icon } from "./dom";
import { MessageList } from "./messages";
import { MAX_TEXT } from "./protocol";
import { STYLES } from "./styles";

export interface ViewEvents {
  onOpen(): void;
  onSend(text: string): void;
  onInput(text: string): void;
}

/** The widget's DOM, in an open shadow root on a host element of its own. */
export class View {
  readonly host: HTMLElement;
  readonly messages = new MessageList();
  private readonly bubble: HTMLButtonElement;
  private readonly panel: HTMLElement;
  private readonly input: HTMLTextAreaElement;
  private readonly status: HTMLElement;
  private readonly error: HTMLElement;
  private readonly typing: HTMLElement;
  private typingTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    title: string,
    private readonly events: ViewEvents,
    private readonly remember: (open: boolean) => void,
  ) {
    this.host = h("div", { id: "switchboard-widget", "data-sb": "host" });
    const root = this.host.attachShadow({ mode: "open" });
    const style = h("style");
    style.textContent = STYLES;

    this.bubble = h(
      "button",
      {
        type: "button",
        class: "bubble",
        "data-sb": "bubble",
        "aria-label": "Open chat",
        "aria-expanded": "false",
        "aria-controls": "sb-panel",
      },
      icon(CHAT_ICON),
    );
    const close = h(
      "button",
      { type: "button", class: "close", "data-sb": "close", "aria-label": "Close chat" },
      icon(CLOSE_ICON),
    );
    this.status = h("div", { class: "status", role: "status", "data-sb": "status", hidden: "" });
    this.error = h("div", { class: "error", role: "alert", "data-sb": "error", hidden: "" });
    this.typing = h("div", { class: "typing", "data-sb": "typing", hidden: "" }, "An agent is typing\u2026");
    this.input = h("textarea", {
      class: "input",
      "data-sb": "input",
      "aria-label": "Message",
      placeholder: "Type a message\u2026",
      rows: "1",
      maxlength: String(MAX_TEXT),
      autocomplete: "off",
    });
    const send = h("button", { type: "submit", class: "send", "data-sb": "send" }, "Send");
    const form = h("form", { class: "form", "data-sb": "form" }, this.input, send);
    this.panel = h(
      "div",
      { id: "sb-panel", class: "panel", role: "dialog", "aria-label": title, "data-sb": "panel", hidden: "" },
      h("div", { class: "header" }, h("h2", { class: "title", "data-sb": "title" }, title), close),
      this.status,
      this.error,
      this.messages.element,
      this.typing,
      form,
    );
    root.append(style, h("div", { class: "sb" }, this.panel, this.bubble));

    this.bubble.addEventListener("click", () => (this.isOpen ? this.close() : this.open()));
    close.addEventListener("click", () => this.close());
    this.panel.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        event.stopPropagation();
        this.close();
      }
    });
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
    this.input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.submit();
      }
    });
    this.input.addEventListener("input", () => {
      this.autosize();
      this.events.onInput(this.input.value);
    });
  }

  get isOpen(): boolean {
    return !this.panel.hidden;
  }

  /** Show the panel; `focus` is false when restoring the state of a reload, not to steal focus. */
  open(focus = true): void {
    this.panel.hidden = false;
    this.bubble.setAttribute("aria-expanded", "true");
    this.bubble.removeAttribute("data-unread");
    this.remember(true);
    this.messages.scroll();
    if (focus) this.input.focus();
    this.events.onOpen();
  }

  close(): void {
    const hadFocus = this.host.shadowRoot?.activeElement != null;
    this.panel.hidden = true;
    this.bubble.setAttribute("aria-expanded", "false");
    this.remember(false);
    if (hadFocus) this.bubble.focus();
  }

  /** A message the visitor has not seen yet arrived while the panel was closed. */
  markUnread(): void {
    if (!this.isOpen) this.bubble.toggleAttribute("data-unread", true);
  }

  setStatus(text: string | null): void {
    this.status.textContent = text ?? "";
    this.status.hidden = text === null;
  }

  setError(text: string): void {
    this.error.textContent = text;
    this.error.hidden = false;
    this.input.disabled = true;
    this.setStatus(null);
  }

  /** The operator's typing line; it clears itself if the end of typing never comes. */
  setTyping(typing: boolean): void {
    clearTimeout(this.typingTimer);
    this.typing.hidden = !typing;
    if (typing) this.typingTimer = setTimeout(() => this.setTyping(false), 15000);
  }

  private submit(): void {
    const text = this.input.value.trim();
    if (!text || this.input.disabled) return;
    this.input.value = "";
    this.autosize();
    this.events.onSend(text);
    this.input.focus();
  }

  private autosize(): void {
    this.input.style.height = "auto";
    this.input.style.height = `${Math.min(this.input.scrollHeight, 120)}px`;
  }
}
