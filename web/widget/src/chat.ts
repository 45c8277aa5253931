import { io, type Socket } from "socket.io-client";
import type { WidgetConfig } from "./config";
import { newClientId } from "./ids";
import {
  REFUSALS,
  type ChatMessage,
  type ClientEvents,
  type ConnectAuth,
  type MessageAck,
  type ServerEvents,
  type Session,
} from "./protocol";
import type { OutboxItem, Store } from "./store";
import type { View } from "./view";

const ACK_TIMEOUT_MS = 10000;
const RESEND_DELAY_MS = 5000;
const TYPING_EVERY_MS = 2000;
const TYPING_IDLE_MS = 4000;
const MAX_BACKOFF_MS = 30000;

type WidgetSocket = Socket<ServerEvents, ClientEvents>;

/**
 * One visitor's conversation over the `/widget` namespace: connects, keeps the visitor token,
 * catches up from the newest message it holds, and sends through a persistent outbox so a
 * message typed before a disconnect or a reload is retried with the same id until acked.
 */
export class Chat {
  private socket: WidgetSocket | null = null;
  private lastId: string | undefined;
  private conversationId: string | null = null;
  private welcomeMessage: string | undefined;
  private stopped = false;
  private readonly inFlight = new Set<string>();
  private resendTimer: ReturnType<typeof setTimeout> | undefined;
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  private failures = 0;
  private connectedOnce = false;
  private typingSentAt = 0;
  private typingIdle: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly config: WidgetConfig,
    private readonly store: Store,
    private readonly view: View,
  ) {
    for (const item of store.outbox()) view.messages.add({ id: item.id, role: "user", text: item.text }, true);
  }

  /** Connect now; a first-time visitor connects on first opening the chat instead. */
  get wantsConnection(): boolean {
    return this.store.token !== null || this.store.outbox().length > 0;
  }

  connect(): void {
    if (this.stopped) return;
    if (this.socket) {
      if (!this.socket.active) this.socket.connect();
      return;
    }
    const socket: WidgetSocket = io(`${this.config.server}/widget`, {
      path: "/socket.io/",
      transports: ["websocket", "polling"],
      // A function, so each reconnect sends the newest token and the newest message id.
      auth: (cb) => cb(this.auth()),
    });
    this.socket = socket;
    socket.on("connect", () => this.onConnect());
    socket.on("connect_error", (error) => this.onConnectError(error));
    socket.on("disconnect", (reason) => this.onDisconnect(reason));
    socket.on("session", (session) => this.onSession(session));
    socket.on("history", (history) => {
      for (const message of history?.messages ?? []) this.receive(message);
      this.view.messages.welcome(this.welcomeMessage);
    });
    socket.on("message", (message) => this.receive(message));
    socket.on("answer.delta", (event) => {
      if (this.ours(event.conversation_id)) this.view.messages.delta(event.request_id, event.delta);
    });
    socket.on("answer.reset", (event) => {
      if (this.ours(event.conversation_id)) this.view.messages.reset(event.request_id);
    });
    socket.on("typing", (event) => {
      if (event.role === "operator" && this.ours(event.conversation_id)) this.view.setTyping(event.typing);
    });
  }

  send(text: string): void {
    if (this.stopped) return;
    const item: OutboxItem = { id: newClientId(), text };
    this.store.addToOutbox(item);
    this.view.messages.add({ id: item.id, role: "user", text }, true);
    this.stopTyping();
    if (this.socket?.connected) this.deliver(item);
    else this.connect();
  }

  /** The visitor typed: `typing: true` at most every 2 s, `typing: false` after 4 s idle. */
  typed(text: string): void {
    if (!text.trim()) {
      this.stopTyping();
      return;
    }
    const now = Date.now();
    if (this.socket?.connected && now - this.typingSentAt >= TYPING_EVERY_MS) {
      this.socket.emit("typing", { typing: true });
      this.typingSentAt = now;
    }
    clearTimeout(this.typingIdle);
    this.typingIdle = setTimeout(() => this.stopTyping(), TYPING_IDLE_MS);
  }

  private stopTyping(): void {
    clearTimeout(this.typingIdle);
    if (this.typingSentAt === 0) return;
    this.typingSentAt = 0;
    if (this.socket?.connected) this.socket.emit("typing", { typing: false });
  }

  private auth(): ConnectAuth {
    const auth: ConnectAuth = { key: this.config.key };
    const token = this.store.token;
    if (token) auth.token = token;
    if (this.lastId) auth.last_id = this.lastId;
    return auth;
  }

  private ours(conversationId: string | undefined): boolean {
    return !conversationId || !this.conversationId || conversationId === this.conversationId;
  }

  private onConnect(): void {
    this.failures = 0;
    this.connectedOnce = true;
    this.view.setStatus(null);
    this.flush();
  }

  private onSession(session: Session): void {
    if (session.token) this.store.token = session.token;
    if (this.conversationId && session.conversation_id !== this.conversationId) {
      // A new visitor (the old token expired): the old conversation is not theirs to see.
      this.view.messages.clear();
      this.lastId = undefined;
    }
    this.conversationId = session.conversation_id;
    this.welcomeMessage = session.welcome_message;
  }

  private receive(message: ChatMessage): void {
    if (!message?.id || !this.ours(message.conversation_id)) return;
    if (message.role === "operator") this.view.setTyping(false);
    if (this.view.messages.add(message)) {
      this.lastId = message.id;
      if (message.role !== "user") this.view.markUnread();
    }
  }

  private onConnectError(error: Error & { data?: unknown }): void {
    const socket = this.socket;
    if (!socket) return;
    if (socket.active) {
      // The server could not be reached: socket.io retries by itself, with backoff.
      this.view.setStatus(this.connectedOnce ? "Connection lost. Reconnecting\u2026" : "Connecting\u2026");
      return;
    }
    const code = refusalCode(error);
    if (code === "bad_key" || code === "blocked") {
      this.stopped = true;
      socket.disconnect();
      this.view.setError("This chat is not available right now.");
      return;
    }
    if ((code === "bad_token" || code === "token_expired") && this.store.token !== null) {
      // Connect again as a new visitor, whose conversation starts empty.
      this.store.token = null;
      this.lastId = undefined;
      this.conversationId = null;
      this.view.messages.clear();
      socket.connect();
      return;
    }
    this.view.setStatus("Chat unavailable. Retrying\u2026");
    this.reconnectLater();
  }

  private onDisconnect(reason: string): void {
    this.inFlight.clear();
    if (this.stopped || reason === "io client disconnect") return;
    this.view.setStatus("Connection lost. Reconnecting\u2026");
    // The server closed this namespace on purpose: socket.io leaves reconnecting to us.
    if (reason === "io server disconnect") this.reconnectLater();
  }

  private reconnectLater(): void {
    clearTimeout(this.reconnectTimer);
    const delay = Math.min(MAX_BACKOFF_MS, 1000 * 2 ** this.failures) * (0.5 + Math.random() / 2);
    this.failures += 1;
    this.reconnectTimer = setTimeout(() => this.connect(), delay);
  }

  private flush(): void {
    for (const item of this.store.outbox()) {
      if (!this.view.messages.has(item.id)) this.view.messages.add({ id: item.id, role: "user", text: item.text }, true);
      this.deliver(item);
    }
  }

  private deliver(item: OutboxItem): void {
    const socket = this.socket;
    if (!socket?.connected || this.inFlight.has(item.id)) return;
    this.inFlight.add(item.id);
    socket.timeout(ACK_TIMEOUT_MS).emit("message", { id: item.id, text: item.text }, (error: Error | null, ack: MessageAck) => {
      this.inFlight.delete(item.id);
      if (!error && ack?.ok) {
        this.store.removeFromOutbox(item.id);
        this.view.messages.confirm(item.id, ack.message_id);
        return;
      }
      if (!error && ack && !ack.ok && ack.error?.code === "invalid") {
        // Retrying the same text would be refused again.
        this.store.removeFromOutbox(item.id);
        this.view.messages.fail(item.id);
        return;
      }
      // Timed out, `unavailable` or `rate_limited`: kept in the outbox, sent again with the
      // same id (not before the server said it may be).
      const waitMs = !error && ack && !ack.ok && ack.retry_after_s ? ack.retry_after_s * 1000 : 0;
      clearTimeout(this.resendTimer);
      this.resendTimer = setTimeout(() => {
        if (this.socket?.connected) this.flush();
      }, Math.max(RESEND_DELAY_MS, waitMs));
    });
  }
}

function refusalCode(error: Error & { data?: unknown }): string | undefined {
  const data = error.data as { code?: unknown } | undefined;
  if (typeof data?.code === "string") return data.code;
  return (REFUSALS as readonly string[]).includes(error.message) ? error.message : undefined;
}
