// Small Preact helpers shared by the views.

import { html, useEffect, useReducer } from "./vendor/htm-preact-standalone.module.js";

export { html };

/** Re-renders the calling component whenever one of `keys` is emitted by the store. */
export function useStoreKeys(store, keys) {
  const [, bump] = useReducer((n) => n + 1, 0);
  const joined = keys.join("\n");
  useEffect(() => {
    const offs = keys.map((key) => store.on(key, bump));
    bump(); // what was emitted between the first render and this effect is not lost
    return () => offs.forEach((off) => off());
  }, [store, joined]);
}

/** A one-line message shown to the user after a failed request. */
export function describeError(err) {
  if (!err) return "";
  return err.code ? `${err.code}: ${err.detail || err.message}` : String(err.message || err);
}
