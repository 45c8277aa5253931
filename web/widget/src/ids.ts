/** A client-generated message id: 1-64 of `A-Za-z0-9_-`, unique enough to deduplicate retries. */
export function newClientId(): string {
  const cryptoApi: Crypto | undefined = globalThis.crypto;
  // randomUUID exists only in secure contexts; a widget may be embedded in a plain-http page.
  if (cryptoApi && typeof cryptoApi.randomUUID === "function") {
    return cryptoApi.randomUUID().replace(/-/g, "");
  }
  const bytes = new Uint8Array(16);
  if (cryptoApi && typeof cryptoApi.getRandomValues === "function") {
    cryptoApi.getRandomValues(bytes);
  } else {
    for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(Math.random() * 256);
  }
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
