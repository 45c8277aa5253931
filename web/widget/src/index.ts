// Switchboard's chat widget: `<script src="https://HOST/widget.js" data-key="pk_..." async></script>`.
import { Chat } from "./chat";
import { findScript, readConfig } from "./config";
import { Store } from "./store";
import { View } from "./view";

// Read while this script runs: document.currentScript is null after that.
const script = findScript();

function start(): void {
  const config = script ? readConfig(script) : null;
  if (!config) {
    console.error("Switchboard widget: the script tag needs a data-key attribute");
    return;
  }
  if (document.querySelector("[data-sb=host]")) return; // embedded twice
  const store = new Store(config.key);
  let chat: Chat | null = null;
  const view = new View(
    config.title,
    {
      onOpen: () => chat?.connect(),
      onSend: (text) => chat?.send(text),
      onInput: (text) => chat?.typed(text),
    },
    (open) => (store.open = open),
  );
  chat = new Chat(config, store, view);
  document.body.append(view.host);
  if (store.open) view.open(false);
  else if (chat.wantsConnection) chat.connect();
}

if (document.body) start();
else document.addEventListener("DOMContentLoaded", start, { once: true });
