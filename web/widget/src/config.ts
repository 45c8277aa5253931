export interface WidgetConfig {
  key: string;
  /** The socket.io origin, without a trailing slash. */
  server: string;
  title: string;
}

/** The tag that loaded the widget: itself while it runs, else the first one with a key. */
export function findScript(): HTMLScriptElement | null {
  const current = document.currentScript;
  if (current instanceof HTMLScriptElement && current.dataset["key"]) return current;
  return document.querySelector<HTMLScriptElement>("script[data-key]");
}

export function readConfig(script: HTMLScriptElement): WidgetConfig | null {
  const key = script.dataset["key"]?.trim();
  if (!key) return null;
  let server = script.dataset["server"]?.trim();
  if (!server) {
    try {
      server = new URL(script.src, document.baseURI).origin;
    } catch {
      server = window.location.origin;
    }
  }
  return {
    key,
    server: server.replace(/\/+$/, ""),
    title: script.dataset["title"]?.trim() || "Chat with us",
  };
}
