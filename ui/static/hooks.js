// Small Preact helpers shared by the views.

import { html, useEffect, useReducer } from "./vendor/htm-preact-standalone.module.js";

export { html };

/** Re-renders the calling component whenever one of `keys` is emitted by the store. */
export function useStoreKeys(store, keys) {
  const [, bump] = useReducer((n) => n + 1, 0);
  const joined = keys.join("\n");
  const seen = store.stamp(keys);
  useEffect(() => {
    const offs = keys.map((key) => store.on(key, bump));
    // What was emitted between the render and this effect is not lost; re-rendering only
    // then (not always) keeps a first render of 500 rows from being done twice.
    if (store.stamp(keys) !== seen) bump();
    return () => offs.forEach((off) => off());
  }, [store, joined]);
}

/** A one-line message shown to the user after a failed request. */
export function describeError(err) {
  if (!err) return "";
  return err.code ? `${err.code}: ${err.detail || err.message}` : String(err.message || err);
}
