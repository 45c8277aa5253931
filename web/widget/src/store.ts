import type { ChatMessage } from "./protocol";

export interface OutboxItem {
  id: string;
  text: string;
}

/**
 * What the widget keeps in the browser, namespaced by the widget key so two Switchboard
 * applications embedded on one site never share a visitor. Storage can throw (blocked
 * cookies, private modes, full quota): the widget then just forgets across reloads.
 */
export class Store {
  private readonly prefix: string;

  constructor(key: string) {
    this.prefix = `switchboard:${key}:`;
  }

  get token(): string | null {
    return read(localStore(), this.prefix + "token");
  }

  set token(value: string | null) {
    write(localStore(), this.prefix + "token", value);
  }

  get open(): boolean {
    return read(sessionStore(), this.prefix + "open") === "1";
  }

  set open(value: boolean) {
    write(sessionStore(), this.prefix + "open", value ? "1" : null);
  }

  /** Messages not acknowledged yet; read fresh each time, since other tabs change it too. */
  outbox(): OutboxItem[] {
    const raw = read(localStore(), this.prefix + "outbox");
    if (!raw) return [];
    try {
      const parsed: unknown = JSON.parse(raw);
      return Array.isArray(parsed) ? parsed.filter(isOutboxItem) : [];
    } catch {
      return [];
    }
  }

  addToOutbox(item: OutboxItem): void {
    this.saveOutbox([...this.outbox().filter((other) => other.id !== item.id), item]);
  }

  removeFromOutbox(id: string): void {
    this.saveOutbox(this.outbox().filter((item) => item.id !== id));
  }

  private saveOutbox(items: OutboxItem[]): void {
    write(localStore(), this.prefix + "outbox", items.length ? JSON.stringify(items) : null);
  }
}

function isOutboxItem(value: unknown): value is OutboxItem {
  const item = value as Partial<ChatMessage> | null;
  return typeof item?.id === "string" && typeof item.text === "string";
}

function localStore(): Storage | null {
  try {
    return window.localStorage;
  } catch {
    return null;
  }
}

function sessionStore(): Storage | null {
  try {
    return window.sessionStorage;
  } catch {
    return null;
  }
}

function read(storage: Storage | null, name: string): string | null {
  try {
    return storage ? storage.getItem(name) : null;
  } catch {
    return null;
  }
}

function write(storage: Storage | null, name: string, value: string | null): void {
  try {
    if (!storage) return;
    if (value === null) storage.removeItem(name);
    else storage.setItem(name, value);
  } catch {
    // Quota or privacy settings: the widget still works for this page view.
  }
}
